//! Requests this node sent (asks and spawns) that wait for a reply, by request id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::ClusterError;
use crate::ids::{IdMap, LocalActorId, NodeId, RequestId};
use crate::transport::protocol_error::ProtocolError;

/// A successful reply to a request.
#[derive(Debug)]
pub(crate) enum Reply {
    /// An ask's encoded result.
    Value(Bytes),
    /// A remote spawn's new actor.
    Spawned(LocalActorId),
}

/// What a request resolves to.
pub(crate) type ReplyResult = Result<Reply, ClusterError>;

struct Pending {
    peer: NodeId,
    reply: oneshot::Sender<ReplyResult>,
}

/// The pending requests.
pub(crate) struct Requests {
    next: AtomicU64,
    pending: Mutex<IdMap<RequestId, Pending>>,
}

impl Requests {
    pub(crate) fn new() -> Self {
        Self { next: AtomicU64::new(1), pending: Mutex::new(IdMap::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, IdMap<RequestId, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new request to `peer`; its reply arrives on the receiver.
    pub(crate) fn open(&self, peer: NodeId) -> (RequestId, oneshot::Receiver<ReplyResult>) {
        let id = RequestId(self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, Pending { peer, reply: tx });
        (id, rx)
    }

    /// Forgets a request (timed out or never sent).
    pub(crate) fn forget(&self, id: RequestId) {
        self.lock().remove(&id);
    }

    /// Completes `id` with `result` if it was sent to `from`. A reply to an unknown request
    /// (it timed out) is dropped; one to a request sent to another node breaks the protocol.
    pub(crate) fn complete(&self, id: RequestId, from: NodeId, result: ReplyResult) -> Result<(), ProtocolError> {
        let pending = {
            let mut pending = self.lock();
            match pending.get(&id) {
                Some(p) if p.peer == from => pending.remove(&id),
                Some(_) => return Err(ProtocolError::ForeignReply(id)),
                None => None,
            }
        };
        match pending {
            Some(p) => {
                let _ = p.reply.send(result);
            }
            None => tracing::debug!(request = %id, "late reply dropped (the request timed out)"),
        }
        Ok(())
    }

    /// Fails every request sent to `peer` with [`ClusterError::LinkDown`].
    pub(crate) fn fail_peer(&self, peer: NodeId, name: &str) {
        let failed: Vec<Pending> = {
            let mut pending = self.lock();
            let ids: Vec<RequestId> = pending.iter().filter(|(_, p)| p.peer == peer).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| pending.remove(&id)).collect()
        };
        if !failed.is_empty() {
            tracing::debug!(peer = %name, count = failed.len(), "failing pending requests: link down");
        }
        for p in failed {
            let _ = p.reply.send(Err(ClusterError::LinkDown { node: name.to_owned() }));
        }
    }

    /// Fails every request with [`ClusterError::Shutdown`].
    pub(crate) fn fail_all(&self) {
        let all = std::mem::take(&mut *self.lock());
        for (_, p) in all {
            let _ = p.reply.send(Err(ClusterError::Shutdown));
        }
    }

    /// Number of requests waiting for a reply.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
