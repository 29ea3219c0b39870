//! The peers this node has a link to: at most one link per peer, the tie-break when two
//! links race, and the replacement of a restarted node's old incarnation.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::ids::{IdMap, LinkId, NodeId};
use crate::proto::membership::Profile;
use crate::proto::wire::frame::{self, EncodedFrame, Frame, GoodbyeReason, RejectReason};
use crate::proto::wire::handshake::{self, Initiator};
use crate::transport::link::LinkUp;

/// What this node knows about a linked peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id (this incarnation).
    pub id: NodeId,
    /// The peer's node name.
    pub name: String,
    /// The address the peer accepts links on.
    pub addr: String,
    /// The peer's incarnation generation.
    pub generation: u64,
    /// The peer's roles, capabilities and metadata.
    pub profile: Profile,
    /// The largest frame body the peer accepts.
    pub max_frame: usize,
}

struct Peer {
    link: LinkId,
    initiator: Initiator,
    sender: mpsc::Sender<EncodedFrame>,
    close: CancellationToken,
    info: PeerInfo,
}

#[derive(Default)]
struct Table {
    by_id: IdMap<NodeId, Peer>,
    by_name: HashMap<String, NodeId>,
}

/// A registered link.
pub(crate) struct Registered {
    /// The peer.
    pub(crate) info: PeerInfo,
    /// The previous incarnation of the same node, whose link was closed.
    pub(crate) stale: Option<PeerInfo>,
}

/// A link that was removed from the table.
pub(crate) struct Removed {
    pub(crate) info: PeerInfo,
}

/// The peer table.
pub(crate) struct Peers {
    table: Mutex<Table>,
    changed: watch::Sender<u64>,
}

impl Peers {
    pub(crate) fn new() -> Self {
        Self { table: Mutex::new(Table::default()), changed: watch::channel(0).0 }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters more than stopping the node, so continue with the data.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that changes whenever a link comes up or goes down.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Registers a link that completed its handshake as `link`, or refuses it when the
    /// existing link to that peer wins the tie-break.
    pub(crate) fn register(&self, local: NodeId, link: LinkId, up: LinkUp) -> Result<Registered, RejectReason> {
        let peer_id = up.peer.node_id;
        let mut stale = None;
        let info = PeerInfo {
            id: peer_id,
            name: up.peer.node_name.clone(),
            addr: up.peer.listen_addr.clone(),
            generation: up.peer.generation,
            profile: up.peer.profile.clone(),
            max_frame: up.peer.max_frame as usize,
        };
        {
            let mut t = self.lock();
            if let Some(existing) = t.by_id.get(&peer_id) {
                if !handshake::new_link_wins(local, peer_id, existing.initiator, up.initiator) {
                    return Err(RejectReason::DuplicateLink { node: local });
                }
                if let Some(old) = t.by_id.remove(&peer_id) {
                    // Let the old link drain what is queued, then close; the peer moves too.
                    if let Ok(bye) = frame::encode(&Frame::Goodbye(GoodbyeReason::Replaced)) {
                        let _ = old.sender.try_send(bye);
                    }
                }
            }
            if let Some(&old_id) = t.by_name.get(&info.name) {
                if old_id != peer_id {
                    // The same name with a new id: the node restarted. The old one is gone.
                    if let Some(old) = t.by_id.remove(&old_id) {
                        old.close.cancel();
                        stale = Some(old.info);
                    }
                }
            }
            t.by_name.insert(info.name.clone(), peer_id);
            let peer = Peer { link, initiator: up.initiator, sender: up.sender, close: up.close, info: info.clone() };
            t.by_id.insert(peer_id, peer);
        }
        self.bump();
        Ok(Registered { info, stale })
    }

    /// Forgets `link` if it is still the current link to `peer`, and closes it.
    pub(crate) fn remove(&self, link: LinkId, peer: NodeId) -> Option<Removed> {
        let removed = {
            let mut t = self.lock();
            match t.by_id.get(&peer) {
                Some(p) if p.link == link => {
                    let p = t.by_id.remove(&peer);
                    if let Some(p) = &p {
                        if t.by_name.get(&p.info.name) == Some(&peer) {
                            t.by_name.remove(&p.info.name);
                        }
                    }
                    p
                }
                _ => None,
            }
        }?;
        removed.close.cancel();
        self.bump();
        Some(Removed { info: removed.info })
    }

    /// Removes every peer, queueing `last` (a goodbye) on each link first, or closing the
    /// links at once when there is none.
    pub(crate) fn clear(&self, last: Option<&EncodedFrame>) {
        {
            let mut t = self.lock();
            for (_, peer) in t.by_id.drain() {
                match last {
                    Some(bytes) => {
                        let _ = peer.sender.try_send(bytes.clone());
                    }
                    None => peer.close.cancel(),
                }
            }
            t.by_name.clear();
        }
        self.bump();
    }

    /// The outbound queue of the link to `peer`.
    pub(crate) fn sender(&self, peer: NodeId) -> Option<mpsc::Sender<EncodedFrame>> {
        self.lock().by_id.get(&peer).map(|p| p.sender.clone())
    }

    /// The outbound queue of the link to `peer` and the largest frame body it accepts.
    pub(crate) fn route(&self, peer: NodeId) -> Option<(mpsc::Sender<EncodedFrame>, usize)> {
        self.lock().by_id.get(&peer).map(|p| (p.sender.clone(), p.info.max_frame))
    }

    /// Queues an encoded frame on the link to `peer` without waiting; false if there is no
    /// link, its queue is full, or the frame is larger than the peer accepts.
    pub(crate) fn try_send(&self, peer: NodeId, bytes: EncodedFrame) -> bool {
        let Some((sender, max)) = self.route(peer) else { return false };
        if frame::body_len(&bytes) > max {
            tracing::warn!(%peer, size = frame::body_len(&bytes), max, "frame larger than the peer accepts; not sent");
            return false;
        }
        sender.try_send(bytes).is_ok()
    }

    /// The linked peers, sorted by name.
    pub(crate) fn list(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<_> = self.lock().by_id.values().map(|p| p.info.clone()).collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        peers
    }

    /// The peer of that name.
    pub(crate) fn by_name(&self, name: &str) -> Option<PeerInfo> {
        let t = self.lock();
        t.by_name.get(name).and_then(|id| t.by_id.get(id)).map(|p| p.info.clone())
    }

    /// True if a link to `peer` exists.
    pub(crate) fn contains(&self, peer: NodeId) -> bool {
        self.lock().by_id.contains_key(&peer)
    }

    /// True if a linked peer listens on `addr`.
    pub(crate) fn listens_on(&self, addr: &str) -> bool {
        self.lock().by_id.values().any(|p| p.info.addr == addr)
    }

    /// The peer's name, or its id when it is not linked.
    pub(crate) fn name_of(&self, peer: NodeId) -> String {
        self.lock().by_id.get(&peer).map(|p| p.info.name.clone()).unwrap_or_else(|| peer.to_string())
    }

    /// Frames queued on all links.
    pub(crate) fn queued(&self) -> usize {
        self.lock().by_id.values().map(|p| p.sender.max_capacity() - p.sender.capacity()).sum()
    }
}
