//! [`ClusterSystem`]: one node of a cluster.
//!
//! All state lives behind one `Arc`, so several systems can run in one process (tests,
//! the harness). Tasks run on the current thread's `LocalSet` (the actix system), and
//! time comes from `tokio::time`.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use actix::Addr;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actor::DistributedActor;
use crate::error::{ClusterError, RemoteErrorKind};
use crate::format::Format;
use crate::handle::{ActorRef, RemoteAddr};
use crate::node::config::valid_name;
use crate::node::config::ClusterConfig;
use crate::node::id_hasher::IdMap;
use crate::node::membership::MembershipHandle;
use crate::proto::backoff::Backoff;
use crate::proto::frame::{self, EncodedFrame, Frame, GoodbyeReason, Hello, Outcome, RejectReason, PROTOCOL_VERSION};
use crate::proto::handshake::{self, Initiator};
use crate::registry::TypeRegistry;
use crate::transport::link::{self, LinkEnd, LinkHandler, LinkOutcome, LinkUp};
use crate::transport::network::NetListener;
use rand::{rngs::SmallRng, Rng, SeedableRng};

/// A node's id: random, new for every start of the node (its incarnation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u128);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What this node knows about a linked peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id (this incarnation).
    pub id: NodeId,
    /// The peer's node name.
    pub name: String,
    /// The address the peer accepts links on.
    pub addr: String,
}

/// Prepared, not yet started node. Created by [`ClusterSystem::new`].
#[derive(Debug)]
pub struct ClusterSystemBuilder {
    cluster: String,
    config: ClusterConfig,
}

impl ClusterSystemBuilder {
    /// Binds the listener, starts linking to the seed nodes and returns the running node.
    ///
    /// Must be called inside an actix system (or a tokio `LocalSet`). Fails if the cluster
    /// name is invalid, two registered types share a wire id, or the address cannot be bound.
    pub async fn start(self) -> Result<ClusterSystem, ClusterError> {
        if !valid_name(&self.cluster) {
            return Err(crate::error::ConfigError::InvalidClusterName(self.cluster).into());
        }
        let types = TypeRegistry::from_inventory()?;
        let listener = self
            .config
            .network
            .0
            .bind(self.config.bind)
            .await
            .map_err(|source| ClusterError::Bind { addr: self.config.bind.to_string(), source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ClusterError::Bind { addr: self.config.bind.to_string(), source })?;
        let mut rng = match self.config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        let node_id = NodeId(rng.random::<u128>());
        let (peers_changed, _) = watch::channel(0u64);
        let advertised = if local_addr.ip().is_unspecified() {
            format!("{}:{}", self.config.node_name, local_addr.port())
        } else {
            local_addr.to_string()
        };
        let generation = self.config.generation.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
        });
        let local_hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster: self.cluster.clone(),
            node_id: node_id.0,
            node_name: self.config.node_name.clone(),
            listen_addr: advertised.clone(),
            auth: None,
            generation,
            profile: self.config.profile.clone(),
        };
        let membership = ClusterSystem::new_membership(&local_hello, &self.config, rng.random());
        let inner = Arc::new(Inner {
            cluster: self.cluster,
            config: self.config,
            node_id,
            local_addr,
            types,
            state: Mutex::new(State::default()),
            next_request: AtomicU64::new(1),
            next_actor: AtomicU64::new(1),
            next_link: AtomicU64::new(1),
            peers_changed,
            stop_accepting: CancellationToken::new(),
            links: CancellationToken::new(),
            tasks: TaskTracker::new(),
            started: tokio::time::Instant::now(),
            advertised,
            generation,
            membership,
        });
        let system = ClusterSystem { inner };
        tracing::info!(
            cluster = %system.inner.cluster, node = %system.node_name(), id = %node_id, addr = %local_addr,
            "cluster node started"
        );
        let accept = accept_loop(system.clone(), listener);
        system.inner.tasks.spawn_local(accept);
        for seed in system.inner.config.seed_nodes.clone() {
            system.inner.tasks.spawn_local(connect_loop(system.clone(), seed));
        }
        system.start_membership();
        CURRENT.with(|c| *c.borrow_mut() = Arc::downgrade(&system.inner));
        Ok(system)
    }
}

thread_local! {
    /// The system `start_distributed()` uses on this thread: the one started last.
    static CURRENT: RefCell<Weak<Inner>> = const { RefCell::new(Weak::new()) };
}

/// One node of a cluster. Cheap to clone; all clones are the same node.
///
/// The node runs until [`shutdown`](Self::shutdown) is called.
#[derive(Clone)]
pub struct ClusterSystem {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for ClusterSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSystem")
            .field("cluster", &self.inner.cluster)
            .field("node", &self.inner.config.node_name)
            .field("addr", &self.inner.local_addr)
            .finish()
    }
}

pub(crate) struct Inner {
    cluster: String,
    config: ClusterConfig,
    node_id: NodeId,
    local_addr: SocketAddr,
    types: TypeRegistry,
    state: Mutex<State>,
    next_request: AtomicU64,
    next_actor: AtomicU64,
    next_link: AtomicU64,
    peers_changed: watch::Sender<u64>,
    stop_accepting: CancellationToken,
    links: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) started: tokio::time::Instant,
    advertised: String,
    generation: u64,
    pub(crate) membership: MembershipHandle,
}

#[derive(Default)]
struct State {
    peers: IdMap<u128, Peer>,
    by_name: HashMap<String, u128>,
    actors: IdMap<u64, LocalActor>,
    pending: IdMap<u64, Pending>,
    shut_down: bool,
}

struct Peer {
    link: u64,
    initiator: Initiator,
    sender: mpsc::Sender<EncodedFrame>,
    close: CancellationToken,
    info: PeerInfo,
}

struct LocalActor {
    type_id: u64,
    addr: Arc<dyn Any + Send + Sync>,
}

struct Pending {
    peer: u128,
    reply: oneshot::Sender<Result<Reply, ClusterError>>,
}

/// A successful reply to a request.
pub(crate) enum Reply {
    Value(Bytes),
    Spawned(u64),
}

/// Sends the reply of an ask back to the node that asked. Handed to generated dispatch code.
#[derive(Debug)]
pub struct Replier {
    system: ClusterSystem,
    peer: u128,
    request: u64,
}

impl Replier {
    /// Sends the encoded result, or the error, back to the asking node.
    pub fn reply(self, outcome: Result<Vec<u8>, (RemoteErrorKind, String)>) {
        let frame = match &outcome {
            Ok(bytes) => Frame::Reply { request: self.request, outcome: Outcome::Value(bytes) },
            Err((kind, detail)) => {
                Frame::Reply { request: self.request, outcome: Outcome::Error { kind: *kind, detail: detail.clone() } }
            }
        };
        self.system.inner.send_control(self.peer, &frame);
    }
}

impl ClusterSystem {
    /// Prepares a node of cluster `cluster` (letters, digits, `-`, `_`, `.`); call
    /// [`start`](ClusterSystemBuilder::start) on the result.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(cluster: impl Into<String>, config: ClusterConfig) -> ClusterSystemBuilder {
        ClusterSystemBuilder { cluster: cluster.into(), config }
    }

    /// The system started last on this thread, if it is still running.
    pub fn current() -> Option<ClusterSystem> {
        CURRENT.with(|c| c.borrow().upgrade()).map(|inner| ClusterSystem { inner })
    }

    /// Makes this system the one `start_distributed()` uses on this thread.
    pub fn make_current(&self) {
        CURRENT.with(|c| *c.borrow_mut() = Arc::downgrade(&self.inner));
    }

    /// The cluster's name.
    pub fn cluster_name(&self) -> &str {
        &self.inner.cluster
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.config.node_name
    }

    /// This node's id (this incarnation).
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The address the node accepts links on (with the real port if 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The node's configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The peers this node currently has a link to, sorted by name.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<_> = self.inner.lock().peers.values().map(|p| p.info.clone()).collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        peers
    }

    /// The peer of that name, if linked.
    pub fn peer(&self, name: &str) -> Option<PeerInfo> {
        let state = self.inner.lock();
        state.by_name.get(name).and_then(|id| state.peers.get(id)).map(|p| p.info.clone())
    }

    /// Waits until this node is linked to every node in `names`, or fails with
    /// [`ClusterError::Timeout`] naming none of them (check [`peers`](Self::peers)).
    pub async fn wait_for_peers(&self, names: &[&str], timeout: Duration) -> Result<(), ClusterError> {
        let mut changes = self.inner.peers_changed.subscribe();
        let all_linked = |s: &ClusterSystem| names.iter().all(|n| s.peer(n).is_some());
        let wait = async {
            loop {
                if all_linked(self) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ClusterError::Timeout(timeout))?;
        if all_linked(self) {
            Ok(())
        } else {
            Err(ClusterError::Shutdown)
        }
    }

    /// A receiver that changes whenever a link to a peer comes up or goes down; read the
    /// new state with [`peers`](Self::peers).
    pub fn watch_peers(&self) -> watch::Receiver<u64> {
        self.inner.peers_changed.subscribe()
    }

    /// Number of actors on this node that are reachable from the network.
    pub fn local_actor_count(&self) -> usize {
        self.inner.lock().actors.len()
    }

    /// Starts `actor` on this node, reachable from the network, and returns its handle.
    pub fn spawn_local<A: DistributedActor>(&self, actor: A) -> ActorRef<A> {
        let addr = actix::Actor::start(actor);
        let id = self.register_local(addr.clone());
        ActorRef::local(addr, Some((self.clone(), id)))
    }

    /// Registers a started actor so the network can reach it; returns its id on this node.
    pub fn register_local<A: DistributedActor>(&self, addr: Addr<A>) -> u64 {
        let id = self.inner.next_actor.fetch_add(1, Ordering::Relaxed);
        self.inner.lock().actors.insert(id, LocalActor { type_id: A::TYPE_ID, addr: Arc::new(addr) });
        id
    }

    /// Spawns a default-constructed `T` on node `node` and returns a handle to it.
    pub async fn remote_actor<T: DistributedActor + Default>(&self, node: &str) -> Result<ActorRef<T>, ClusterError> {
        self.remote_actor_with(node, T::default()).await
    }

    /// Spawns `T` on node `node`, built there from `state`, and returns a handle to it.
    pub async fn remote_actor_with<T: DistributedActor>(
        &self,
        node: &str,
        state: T,
    ) -> Result<ActorRef<T>, ClusterError> {
        if node == self.node_name() {
            return Ok(self.spawn_local(state));
        }
        let peer = self.peer(node).ok_or_else(|| ClusterError::UnknownNode(node.to_owned()))?;
        let format = T::format();
        let bytes = format.encode(&state, T::NAME)?;
        let timeout = self.inner.config.request_timeout;
        let reply = self
            .inner
            .request(peer.id.0, timeout, |request| {
                frame::encode(&Frame::Spawn { request, actor_type: T::TYPE_ID, format, state: &bytes })
                    .map_err(|e| ClusterError::Encode { what: "spawn request".into(), detail: e.to_string() })
            })
            .await
            .map_err(|e| match e {
                ClusterError::Remote { .. } | ClusterError::ActorTypeNotRegistered { .. } => {
                    ClusterError::ActorTypeNotRegistered { actor: T::NAME.to_owned(), node: node.to_owned() }
                }
                other => other,
            })?;
        match reply {
            Reply::Spawned(actor) => Ok(ActorRef::remote(RemoteAddr::new(self.clone(), peer, actor))),
            Reply::Value(_) => Err(ClusterError::Decode {
                what: "spawn reply".into(),
                detail: "node answered a spawn with a value".into(),
            }),
        }
    }

    /// Leaves the cluster: says goodbye on every link, fails pending requests with
    /// [`ClusterError::Shutdown`], stops accepting and reconnecting, and waits (up to the
    /// handshake timeout) for the links to drain.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        self.membership_leave();
        inner.stop_accepting.cancel();
        let goodbye = frame::encode(&Frame::Goodbye(GoodbyeReason::Shutdown)).unwrap_or_default();
        let pending = {
            let mut state = inner.lock();
            state.shut_down = true;
            for (_, peer) in state.peers.drain() {
                let _ = peer.sender.try_send(goodbye.clone());
            }
            state.by_name.clear();
            state.actors.clear();
            std::mem::take(&mut state.pending)
        };
        for (_, p) in pending {
            let _ = p.reply.send(Err(ClusterError::Shutdown));
        }
        inner.bump();
        inner.tasks.close();
        if tokio::time::timeout(inner.config.link.handshake_timeout, inner.tasks.wait()).await.is_err() {
            inner.links.cancel();
            inner.tasks.wait().await;
        }
        inner.links.cancel();
        tracing::info!(node = %self.node_name(), "cluster node stopped");
    }
}

#[cfg(feature = "testkit")]
impl ClusterSystem {
    /// Kills the node abruptly, as a crash would: every connection is dropped without a
    /// goodbye, nothing more is accepted or reconnected, pending requests fail with
    /// [`ClusterError::Shutdown`]. Peers see their links drop.
    pub fn kill(&self) {
        let inner = &self.inner;
        self.membership_stop();
        inner.stop_accepting.cancel();
        inner.links.cancel();
        let pending = {
            let mut state = inner.lock();
            state.shut_down = true;
            state.peers.clear();
            state.by_name.clear();
            state.actors.clear();
            std::mem::take(&mut state.pending)
        };
        for (_, p) in pending {
            let _ = p.reply.send(Err(ClusterError::Shutdown));
        }
        inner.tasks.close();
        inner.bump();
        tracing::info!(node = %self.node_name(), "cluster node killed");
    }

    /// Waits until every task of a killed or shut down node has ended (its sockets are closed).
    pub async fn wait_stopped(&self) {
        self.inner.tasks.wait().await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters more than stopping the node, so continue with the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.peers_changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.lock().shut_down
    }

    /// Cancelled when the node stops accepting (shutdown or kill).
    pub(crate) fn stop_signal(&self) -> CancellationToken {
        self.stop_accepting.clone()
    }

    /// Queues an encoded frame on the link to `peer` without waiting; false if there is
    /// no link or its queue is full.
    pub(crate) fn try_send_to(&self, peer: u128, bytes: EncodedFrame) -> bool {
        let sender = self.lock().peers.get(&peer).map(|p| p.sender.clone());
        sender.is_some_and(|s| s.try_send(bytes).is_ok())
    }

    /// Pending requests plus frames queued on links.
    pub(crate) fn in_flight(&self) -> usize {
        let state = self.lock();
        state.pending.len() + state.peers.values().map(|p| p.sender.max_capacity() - p.sender.capacity()).sum::<usize>()
    }

    fn peer_name(&self, peer: u128) -> String {
        self.lock().peers.get(&peer).map(|p| p.info.name.clone()).unwrap_or_else(|| format!("{:032x}", peer))
    }

    /// Queues a control frame (reply) for `peer`, without waiting. Dropped with a log line
    /// if the peer is gone; waits in a task if the queue is full.
    fn send_control(&self, peer: u128, frame: &Frame<'_>) {
        let bytes = match frame::encode(frame) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reply");
                return;
            }
        };
        let sender = self.lock().peers.get(&peer).map(|p| p.sender.clone());
        match sender {
            None => tracing::debug!(peer = %NodeId(peer), "reply dropped: no link to the asking node"),
            Some(sender) => {
                if let Err(mpsc::error::TrySendError::Full(bytes)) = sender.try_send(bytes) {
                    tokio::task::spawn_local(async move {
                        let _ = sender.send(bytes).await;
                    });
                }
            }
        }
    }

    /// Queues a one-way frame for `peer` without waiting; fails with
    /// [`ClusterError::Backpressure`] when the queue is full.
    pub(crate) fn try_tell(&self, peer: u128, peer_name: &str, bytes: EncodedFrame) -> Result<(), ClusterError> {
        self.tell_sender(peer, peer_name)?.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Closed(_) => ClusterError::LinkDown { node: peer_name.to_owned() },
            mpsc::error::TrySendError::Full(_) => ClusterError::Backpressure { node: peer_name.to_owned() },
        })
    }

    /// Queues a one-way frame for `peer`, waiting for queue space.
    pub(crate) async fn tell(&self, peer: u128, peer_name: &str, bytes: EncodedFrame) -> Result<(), ClusterError> {
        let sender = self.tell_sender(peer, peer_name)?;
        match sender.try_send(bytes) {
            Ok(()) => {
                // A loop of awaited tells that never wait for room would starve the link's
                // writer on this thread; yield when the task's budget is spent.
                tokio::task::consume_budget().await;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ClusterError::LinkDown { node: peer_name.to_owned() }),
            Err(mpsc::error::TrySendError::Full(bytes)) => {
                sender.send(bytes).await.map_err(|_| ClusterError::LinkDown { node: peer_name.to_owned() })
            }
        }
    }

    fn tell_sender(&self, peer: u128, peer_name: &str) -> Result<mpsc::Sender<EncodedFrame>, ClusterError> {
        let sender = self.lock().peers.get(&peer).map(|p| p.sender.clone());
        sender.ok_or_else(|| ClusterError::LinkDown { node: peer_name.to_owned() })
    }

    /// Sends a request built by `build(request_id)` to `peer` and waits for its reply.
    pub(crate) async fn request(
        &self,
        peer: u128,
        timeout: Duration,
        build: impl FnOnce(u64) -> Result<EncodedFrame, ClusterError>,
    ) -> Result<Reply, ClusterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let bytes = build(request)?;
        let (tx, rx) = oneshot::channel();
        let sender = {
            let mut state = self.lock();
            if state.shut_down {
                return Err(ClusterError::Shutdown);
            }
            let Some(p) = state.peers.get(&peer) else {
                return Err(ClusterError::LinkDown { node: format!("{:032x}", peer) });
            };
            let sender = p.sender.clone();
            state.pending.insert(request, Pending { peer, reply: tx });
            sender
        };
        let forget = |this: &Self| {
            this.lock().pending.remove(&request);
        };
        let queued = match sender.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
            Err(mpsc::error::TrySendError::Full(bytes)) => {
                match tokio::time::timeout_at(deadline, sender.send(bytes)).await {
                    Ok(r) => r.map_err(|_| ()),
                    Err(_) => {
                        forget(self);
                        return Err(ClusterError::Timeout(timeout));
                    }
                }
            }
        };
        drop(sender);
        if queued.is_err() {
            forget(self);
            return Err(ClusterError::LinkDown { node: self.peer_name(peer) });
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClusterError::Shutdown),
            Err(_) => {
                forget(self);
                Err(ClusterError::Timeout(timeout))
            }
        }
    }

    fn fail_pending(&self, peer: u128, peer_name: &str) {
        let failed: Vec<Pending> = {
            let mut state = self.lock();
            let ids: Vec<u64> = state.pending.iter().filter(|(_, p)| p.peer == peer).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| state.pending.remove(&id)).collect()
        };
        if !failed.is_empty() {
            tracing::debug!(peer = %peer_name, count = failed.len(), "failing pending requests: link down");
        }
        for p in failed {
            let _ = p.reply.send(Err(ClusterError::LinkDown { node: peer_name.to_owned() }));
        }
    }
}

impl LinkHandler for ClusterSystem {
    fn local_hello(&self) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster: self.inner.cluster.clone(),
            node_id: self.inner.node_id.0,
            node_name: self.inner.config.node_name.clone(),
            listen_addr: self.inner.advertised.clone(),
            auth: None,
            generation: self.inner.generation,
            profile: self.inner.config.profile.clone(),
        }
    }

    fn check_hello(&self, hello: &Hello) -> Result<(), RejectReason> {
        if self.inner.lock().shut_down {
            return Err(RejectReason::ShuttingDown);
        }
        handshake::check_hello(&self.inner.cluster, self.inner.node_id.0, hello)
    }

    fn link_up(&self, up: LinkUp) -> Result<u64, RejectReason> {
        let inner = &self.inner;
        let peer_id = up.peer.node_id;
        let link = inner.next_link.fetch_add(1, Ordering::Relaxed);
        let mut stale_incarnation = None;
        {
            let mut state = inner.lock();
            if state.shut_down {
                return Err(RejectReason::ShuttingDown);
            }
            if let Some(existing) = state.peers.get(&peer_id) {
                if !handshake::new_link_wins(inner.node_id.0, peer_id, existing.initiator, up.initiator) {
                    return Err(RejectReason::DuplicateLink { node: inner.node_id.0 });
                }
                if let Some(old) = state.peers.remove(&peer_id) {
                    // Let the old link drain what is queued, then close; the peer moves too.
                    if let Ok(bye) = frame::encode(&Frame::Goodbye(GoodbyeReason::Replaced)) {
                        let _ = old.sender.try_send(bye);
                    }
                }
            }
            if let Some(&old_id) = state.by_name.get(&up.peer.node_name) {
                if old_id != peer_id {
                    // The same name with a new id: the node restarted. The old one is gone.
                    if let Some(old) = state.peers.remove(&old_id) {
                        old.close.cancel();
                    }
                    stale_incarnation = Some(old_id);
                }
            }
            let info =
                PeerInfo { id: NodeId(peer_id), name: up.peer.node_name.clone(), addr: up.peer.listen_addr.clone() };
            state.by_name.insert(info.name.clone(), peer_id);
            state
                .peers
                .insert(peer_id, Peer { link, initiator: up.initiator, sender: up.sender, close: up.close, info });
        }
        if let Some(old) = stale_incarnation {
            inner.fail_pending(old, &up.peer.node_name);
        }
        tracing::info!(
            node = %inner.config.node_name, peer = %up.peer.node_name, addr = %up.peer.listen_addr,
            "linked to peer"
        );
        inner.bump();
        self.membership_link_up(&up.peer);
        Ok(link)
    }

    fn on_frame(&self, _link: u64, peer: u128, frame: Frame<'_>, body: &Bytes) -> Result<(), String> {
        let inner = &self.inner;
        match frame {
            Frame::Tell { target, message, format, payload } => {
                if let Err((kind, detail)) = self.deliver(target, message, format, payload, None) {
                    tracing::warn!(
                        node = %inner.config.node_name, peer = %NodeId(peer), target, message = format_args!("{message:#018x}"),
                        ?kind, %detail, "tell rejected"
                    );
                }
            }
            Frame::Ask { request, target, message, format, payload } => {
                let replier = Replier { system: self.clone(), peer, request };
                if let Err((kind, detail)) = self.deliver(target, message, format, payload, Some(replier)) {
                    tracing::warn!(
                        node = %inner.config.node_name, peer = %NodeId(peer), target, message = format_args!("{message:#018x}"),
                        ?kind, %detail, "ask rejected"
                    );
                    let outcome = Outcome::Error { kind, detail };
                    inner.send_control(peer, &Frame::Reply { request, outcome });
                }
            }
            Frame::Spawn { request, actor_type, format, state } => {
                let outcome = match inner.types.actor(actor_type) {
                    None => Outcome::Error {
                        kind: RemoteErrorKind::UnknownActorType,
                        detail: format!("no actor type with id {actor_type:#018x} is registered"),
                    },
                    Some(reg) => match (reg.spawn)(self, format, state) {
                        Ok(actor) => {
                            tracing::debug!(node = %inner.config.node_name, actor = reg.name, id = actor, "spawned for a peer");
                            Outcome::Spawned { actor }
                        }
                        Err(e) => Outcome::Error { kind: RemoteErrorKind::Decode, detail: e.to_string() },
                    },
                };
                if let Outcome::Error { kind, detail } = &outcome {
                    tracing::warn!(node = %inner.config.node_name, peer = %NodeId(peer), ?kind, %detail, "spawn rejected");
                }
                inner.send_control(peer, &Frame::Reply { request, outcome });
            }
            Frame::Reply { request, outcome } => {
                let pending = {
                    let mut state = inner.lock();
                    match state.pending.get(&request) {
                        Some(p) if p.peer == peer => state.pending.remove(&request),
                        Some(_) => {
                            return Err(format!("reply to request {request} that was sent to another node"));
                        }
                        None => None,
                    }
                };
                let Some(pending) = pending else {
                    tracing::debug!(request, "late reply dropped (the request timed out)");
                    return Ok(());
                };
                let result = match outcome {
                    Outcome::Value(bytes) => Ok(Reply::Value(body.slice_ref(bytes))),
                    Outcome::Spawned { actor } => Ok(Reply::Spawned(actor)),
                    Outcome::Error { kind, detail } => Err(remote_error(kind, detail, inner.peer_name(peer))),
                };
                let _ = pending.reply.send(result);
            }
            f @ (Frame::Swim(_) | Frame::Resources(_) | Frame::Leaving | Frame::View { .. }) => {
                let name = inner.peer_name(peer);
                self.membership_frame(peer, &name, f);
            }
            other => return Err(format!("unexpected {} frame", other.kind())),
        }
        Ok(())
    }

    fn link_down(&self, link: u64, peer: u128, end: &LinkEnd) {
        let inner = &self.inner;
        if *end == LinkEnd::Goodbye(GoodbyeReason::Replaced) {
            // The peer moved to another connection, which may still be completing its
            // handshake on this side. Keep sending here (the peer still reads) until that
            // link replaces this one; give up after a handshake timeout.
            let system = self.clone();
            let grace = inner.config.link.handshake_timeout;
            tokio::task::spawn_local(async move {
                tokio::time::sleep(grace).await;
                system.remove_link(link, peer, &LinkEnd::Goodbye(GoodbyeReason::Replaced));
            });
            return;
        }
        self.remove_link(link, peer, end);
    }
}

impl ClusterSystem {
    /// Forgets `link` if it is still the current link to `peer`, closes it and fails the
    /// requests pending on that peer.
    fn remove_link(&self, link: u64, peer: u128, end: &LinkEnd) {
        let inner = &self.inner;
        let removed = {
            let mut state = inner.lock();
            match state.peers.get(&peer) {
                Some(p) if p.link == link => {
                    let p = state.peers.remove(&peer);
                    if let Some(p) = &p {
                        if state.by_name.get(&p.info.name) == Some(&peer) {
                            state.by_name.remove(&p.info.name);
                        }
                    }
                    p
                }
                _ => None,
            }
        };
        let Some(removed) = removed else { return };
        removed.close.cancel();
        tracing::info!(node = %inner.config.node_name, peer = %removed.info.name, end = ?end, "link to peer down");
        inner.bump();
        inner.fail_pending(peer, &removed.info.name);
        self.membership_link_down(peer, &removed.info.name, end);
    }
}

impl ClusterSystem {
    fn deliver(
        &self,
        target: u64,
        message: u64,
        format: Format,
        payload: &[u8],
        reply: Option<Replier>,
    ) -> Result<(), (RemoteErrorKind, String)> {
        // Dispatch only decodes and enqueues into the actor's mailbox (asks spawn their
        // reply task), so it is safe and cheapest to run under the lock.
        let state = self.inner.lock();
        let Some(actor) = state.actors.get(&target) else {
            return Err((RemoteErrorKind::UnknownActor, format!("no actor with id {target} on this node")));
        };
        let Some(handler) = self.inner.types.handler(actor.type_id, message) else {
            let name = self.inner.types.message(message).map(|m| m.name).unwrap_or("<unregistered>");
            return Err((
                RemoteErrorKind::UnknownMessage,
                format!("actor {target} does not accept message {message:#018x} ({name})"),
            ));
        };
        (handler.dispatch)(&*actor.addr, format, payload, reply)
    }
}

fn remote_error(kind: RemoteErrorKind, detail: String, node: String) -> ClusterError {
    match kind {
        RemoteErrorKind::UnknownActor => ClusterError::ActorNotFound { actor: 0, node },
        RemoteErrorKind::UnknownMessage => ClusterError::MessageNotAccepted { message: detail, node },
        RemoteErrorKind::Decode => ClusterError::Decode { what: format!("message on node `{node}`"), detail },
        RemoteErrorKind::UnknownActorType => ClusterError::ActorTypeNotRegistered { actor: detail, node },
        RemoteErrorKind::ActorStopped => ClusterError::ActorStopped,
        RemoteErrorKind::Encode => ClusterError::Remote { node, detail },
    }
}

async fn accept_loop(system: ClusterSystem, mut listener: Box<dyn NetListener>) {
    let stop = system.inner.stop_accepting.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                let handler = Arc::new(system.clone());
                let settings = system.inner.config.link.clone();
                let token = system.inner.links.child_token();
                system.inner.tasks.spawn_local(async move {
                    link::run(stream, Initiator::Remote, addr.to_string(), handler, settings, token).await;
                });
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl ClusterSystem {
    /// Connects to `addr` (a few attempts with backoff) and runs the link until it ends.
    pub(crate) async fn connect_once(&self, addr: &str) {
        let stop = self.inner.stop_accepting.clone();
        let mut backoff = self.inner.reconnect_backoff(addr);
        for _ in 0..3 {
            match self.dial(addr).await {
                Dialed::Stopped => return,
                Dialed::Linked(LinkOutcome::HandshakeFailed(_)) | Dialed::Unreachable => {}
                Dialed::Linked(_) => return,
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Opens a connection to `addr` (within the handshake timeout) and runs a link over it
    /// until the link ends.
    async fn dial(&self, addr: &str) -> Dialed {
        let inner = &self.inner;
        let connect =
            tokio::time::timeout(inner.config.link.handshake_timeout, inner.config.network.0.connect(addr.to_owned()));
        let connected = tokio::select! {
            biased;
            () = inner.stop_accepting.cancelled() => return Dialed::Stopped,
            c = connect => c,
        };
        match connected {
            Ok(Ok(stream)) => {
                let handler = Arc::new(self.clone());
                let settings = inner.config.link.clone();
                Dialed::Linked(
                    link::run(stream, Initiator::Local, addr.to_owned(), handler, settings, inner.links.child_token())
                        .await,
                )
            }
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "cannot connect");
                Dialed::Unreachable
            }
            Err(_) => {
                tracing::debug!(%addr, "connect timed out");
                Dialed::Unreachable
            }
        }
    }
}

/// What [`ClusterSystem::dial`] came to.
enum Dialed {
    /// The node is stopping.
    Stopped,
    /// No connection could be opened.
    Unreachable,
    /// A connection was opened and the link on it ran until this outcome.
    Linked(LinkOutcome),
}

impl Inner {
    /// Reconnect backoff towards `addr`, with jitter seeded by the address and this node.
    fn reconnect_backoff(&self, addr: &str) -> Backoff {
        let seed = crate::proto::wire_id(addr) ^ self.node_id.0 as u64;
        Backoff::new(self.config.reconnect_base, self.config.reconnect_max, seed)
    }
}

async fn connect_loop(system: ClusterSystem, seed: String) {
    let inner = system.inner.clone();
    let stop = inner.stop_accepting.clone();
    let mut backoff = inner.reconnect_backoff(&seed);
    loop {
        let wait_for_down = match system.dial(&seed).await {
            Dialed::Stopped => return,
            Dialed::Unreachable => None,
            Dialed::Linked(LinkOutcome::Ended { .. }) => {
                backoff.reset();
                None
            }
            Dialed::Linked(LinkOutcome::Rejected { reason: RejectReason::DuplicateLink { .. }, peer, .. }) => peer,
            Dialed::Linked(LinkOutcome::Rejected { reason: RejectReason::SelfConnection, .. }) => {
                tracing::info!(%seed, "seed is this node itself; not linking to it");
                return;
            }
            Dialed::Linked(LinkOutcome::Rejected { .. } | LinkOutcome::HandshakeFailed(_)) => None,
        };
        if let Some(peer) = wait_for_down {
            // Linked to this seed through its own connection: reconnect only once it is gone.
            backoff.reset();
            let mut changes = inner.peers_changed.subscribe();
            while inner.lock().peers.contains_key(&peer) {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    r = changes.changed() => if r.is_err() { return },
                }
            }
            continue;
        }
        let delay = backoff.next_delay();
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}
