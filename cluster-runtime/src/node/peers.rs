//! The peers this node has a link to: at most one link per peer, the tie-break when two
//! links race, and the replacement of a restarted node's old incarnation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::ids::{IdMap, LinkId, LocalActorId, NodeId};
use crate::proto::flow::{FlowWindow, SendWindow};
use crate::proto::membership::Profile;
use crate::proto::wire::frame::{self, EncodedFrame, Frame, GoodbyeReason, RejectReason};
use crate::proto::wire::handshake::{self, Initiator};
use crate::transport::link::LinkUp;
use crate::transport::queue::{LinkQueue, QueueError};

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
    sender: LinkQueue,
    close: CancellationToken,
    info: PeerInfo,
    /// The window the peer grants toward each of its actors.
    flow: FlowWindow,
    /// Credit left toward each actor of the peer this link has told.
    windows: IdMap<LocalActorId, SendWindow>,
    /// Credit left over all the peer's actors.
    link_window: SendWindow,
    /// Woken when credit comes back.
    credit: Arc<Notify>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Tells waiting for this link's credit try again, and find the link gone (or its
        // replacement, with a full window).
        self.credit.notify_waiters();
    }
}

/// Why a tell did not go out at once.
pub(crate) enum TellBlocked {
    /// No credit left: wait for this, then try again.
    NoCredit(Arc<Notify>, EncodedFrame),
    /// Its credit is taken but the link's queue is full: wait for room on this queue.
    QueueFull(LinkQueue, EncodedFrame),
    /// The link's queue is closed (its credit was given back).
    Closed,
    /// There is no link to the peer.
    NoLink,
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

/// Gives back the credit of one tell of `size` bytes to `target` on `p`'s link.
fn window_refund(p: &mut Peer, target: LocalActorId, size: usize) {
    p.link_window.credit(size as u64, 1);
    if let Some(w) = p.windows.get_mut(&target) {
        w.credit(size as u64, 1);
    }
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
                        stale = Some(old.info.clone());
                    }
                }
            }
            t.by_name.insert(info.name.clone(), peer_id);
            let peer = Peer {
                link,
                initiator: up.initiator,
                sender: up.sender,
                close: up.close,
                info: info.clone(),
                flow: up.peer.flow,
                windows: IdMap::default(),
                link_window: SendWindow::new(up.peer.link_flow),
                credit: Arc::new(Notify::new()),
            };
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
        Some(Removed { info: removed.info.clone() })
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
    pub(crate) fn sender(&self, peer: NodeId) -> Option<LinkQueue> {
        self.lock().by_id.get(&peer).map(|p| p.sender.clone())
    }

    /// The outbound queue of the link to `peer` and the largest frame body it accepts.
    pub(crate) fn route(&self, peer: NodeId) -> Option<(LinkQueue, usize)> {
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

    /// Queues a tell to actor `target` of `peer`, taking its credit, if there is credit
    /// left and room in the link's queue.
    pub(crate) fn try_tell(&self, peer: NodeId, target: LocalActorId, bytes: EncodedFrame) -> Result<(), TellBlocked> {
        let size = frame::body_len(&bytes);
        let mut t = self.lock();
        let Some(p) = t.by_id.get_mut(&peer) else { return Err(TellBlocked::NoLink) };
        let flow = p.flow;
        let window = p.windows.entry(target).or_insert_with(|| SendWindow::new(flow));
        if !window.can_send() || !p.link_window.can_send() {
            return Err(TellBlocked::NoCredit(p.credit.clone(), bytes));
        }
        window.debit(size);
        p.link_window.debit(size);
        match p.sender.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(QueueError::Full(bytes)) => Err(TellBlocked::QueueFull(p.sender.clone(), bytes)),
            Err(QueueError::Closed) => {
                window_refund(p, target, size);
                Err(TellBlocked::Closed)
            }
        }
    }

    /// Gives back the credit of a tell that was not queued after all.
    pub(crate) fn refund(&self, peer: NodeId, target: LocalActorId, size: usize) {
        self.credit(peer, target, size as u64, 1);
    }

    /// Credit from `peer` for its actor `target`; wakes the tells waiting for it.
    pub(crate) fn credit(&self, peer: NodeId, target: LocalActorId, bytes: u64, msgs: u64) {
        let notify = {
            let mut t = self.lock();
            let Some(p) = t.by_id.get_mut(&peer) else { return };
            p.link_window.credit(bytes, msgs);
            if let Some(w) = p.windows.get_mut(&target) {
                w.credit(bytes, msgs);
                // A full window is the same as none: forget it, so the map holds only the
                // actors with tells outstanding.
                if *w == SendWindow::new(p.flow) {
                    p.windows.remove(&target);
                }
            }
            p.credit.clone()
        };
        notify.notify_waiters();
    }

    /// True if a tell to `target` of `peer` could go out now (or there is no link, so the
    /// caller should try and fail).
    pub(crate) fn may_tell(&self, peer: NodeId, target: LocalActorId) -> bool {
        let t = self.lock();
        t.by_id
            .get(&peer)
            .is_none_or(|p| p.link_window.can_send() && p.windows.get(&target).is_none_or(SendWindow::can_send))
    }

    /// The queue of `link` if it is still the current link of its peer.
    pub(crate) fn queue_of_link(&self, link: LinkId) -> Option<LinkQueue> {
        self.lock().by_id.values().find(|p| p.link == link).map(|p| p.sender.clone())
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
        self.lock().by_id.values().map(|p| p.sender.queued_frames()).sum()
    }
}
