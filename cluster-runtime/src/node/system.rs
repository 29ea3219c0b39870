//! [`ClusterSystem`]: one node of a cluster, as users hold it: identity, peers, lifecycle,
//! and the accessors through which each service's API is reached (`membership()`, …).
//!
//! All state lives behind one `Arc`, so several systems can run in one process (tests,
//! the harness). Tasks run on the current thread's `LocalSet` (the actix system), and
//! time comes from `tokio::time`.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::config::ClusterConfig;
use crate::error::ClusterError;
use crate::ids::NodeId;
use crate::node::kernel::Node;
use crate::node::limits::Refusals;
use crate::node::peers::PeerInfo;
use crate::node::service::{Input, Metrics, Stop};
use crate::proto::wire::frame::{self, Frame, GoodbyeReason};

thread_local! {
    /// The system `start_distributed()` uses on this thread: the one started last.
    static CURRENT: RefCell<Weak<Node>> = const { RefCell::new(Weak::new()) };
}

/// Makes `node` the current system of this thread.
pub(crate) fn set_current(node: &Arc<Node>) {
    CURRENT.with(|c| *c.borrow_mut() = Arc::downgrade(node));
}

/// One node of a cluster. Cheap to clone; all clones are the same node.
///
/// The node runs until [`shutdown`](Self::shutdown) is called.
#[derive(Clone)]
pub struct ClusterSystem {
    pub(crate) node: Arc<Node>,
}

/// A handle to a node that does not keep it alive.
#[derive(Clone, Debug)]
pub struct WeakClusterSystem(Weak<Node>);

impl WeakClusterSystem {
    /// The node, if anything still holds it.
    pub fn upgrade(&self) -> Option<ClusterSystem> {
        self.0.upgrade().map(|node| ClusterSystem { node })
    }
}

impl fmt::Debug for ClusterSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSystem")
            .field("cluster", &self.node.cluster)
            .field("node", &self.node.name())
            .field("addr", &self.node.local_addr)
            .finish()
    }
}

impl ClusterSystem {
    /// The system started last on this thread, if it is still running.
    pub fn current() -> Option<ClusterSystem> {
        CURRENT.with(|c| c.borrow().upgrade()).map(|node| ClusterSystem { node })
    }

    /// Makes this system the one `start_distributed()` uses on this thread.
    pub fn make_current(&self) {
        set_current(&self.node);
    }

    /// A handle that does not keep the node alive.
    pub fn downgrade(&self) -> WeakClusterSystem {
        WeakClusterSystem(Arc::downgrade(&self.node))
    }

    /// The cluster's name.
    pub fn cluster_name(&self) -> &str {
        &self.node.cluster
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        self.node.name()
    }

    /// This node's id (this incarnation).
    pub fn node_id(&self) -> NodeId {
        self.node.id
    }

    /// The address the node accepts links on (with the real port if 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.node.local_addr
    }

    /// The node's configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.node.config
    }

    /// The peers this node currently has a link to, sorted by name.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.node.peers.list()
    }

    /// The peer of that name, if linked.
    pub fn peer(&self, name: &str) -> Option<PeerInfo> {
        self.node.peers.by_name(name)
    }

    /// Waits until this node is linked to every node in `names`. Fails with
    /// [`ClusterError::Timeout`] if that does not happen in time (check
    /// [`peers`](Self::peers)), and with [`ClusterError::Shutdown`] once the node stops.
    pub async fn wait_for_peers(&self, names: &[&str], timeout: Duration) -> Result<(), ClusterError> {
        let mut changes = self.node.peers.watch();
        let stopping = self.node.life.stopping.clone();
        let wait = async {
            loop {
                if self.node.life.is_shut_down() {
                    return Err(ClusterError::Shutdown);
                }
                if names.iter().all(|n| self.peer(n).is_some()) {
                    return Ok(());
                }
                tokio::select! {
                    biased;
                    () = stopping.cancelled() => {}
                    r = changes.changed() => if r.is_err() { return Err(ClusterError::Shutdown) },
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ClusterError::Timeout(timeout))?
    }

    /// A receiver that changes whenever a link to a peer comes up or goes down; read the
    /// new state with [`peers`](Self::peers).
    pub fn watch_peers(&self) -> watch::Receiver<u64> {
        self.node.peers.watch()
    }

    /// How often each limit refused something since the node started (see
    /// [`LimitsConfig`](crate::config::LimitsConfig)).
    pub fn refusals(&self) -> Refusals {
        self.node.limits.refusals()
    }

    /// Number of actors on this node that are reachable from the network.
    pub fn local_actor_count(&self) -> usize {
        self.node.actors.len()
    }

    /// The figures the services report, as (name, help, value); empty once stopped.
    #[doc(hidden)]
    pub async fn service_gauges(&self) -> Vec<(String, String, f64)> {
        let (tx, rx) = oneshot::channel();
        self.node.to_control(Input::Metrics(tx));
        rx.await.map(|m: Metrics| m.gauges().to_vec()).unwrap_or_default()
    }

    /// Leaves the cluster: the services say goodbye (membership tells every member this
    /// node is leaving), every link gets a goodbye, pending requests fail with
    /// [`ClusterError::Shutdown`], accepting and reconnecting stop, and the node waits (up to
    /// the handshake timeout) for its links to drain. When it returns, every task of the
    /// node has ended.
    pub async fn shutdown(&self) {
        let node = &self.node;
        let grace = node.link_settings.handshake_timeout;
        if node.life.begin_shutdown() {
            let (ack, done) = oneshot::channel();
            node.to_control(Input::Stop(Stop::Leave, Some(ack)));
            let _ = tokio::time::timeout(grace, done).await;
            node.life.stopping.cancel();
            let goodbye = frame::encode(&Frame::Goodbye(GoodbyeReason::Shutdown)).ok();
            node.peers.clear(goodbye.as_ref());
            node.actors.clear();
            node.requests.fail_all();
            node.life.tasks.close();
        }
        if tokio::time::timeout(grace, node.life.tasks.wait()).await.is_err() {
            node.life.links.cancel();
            node.life.tasks.wait().await;
        }
        node.life.links.cancel();
        tracing::info!(node = %self.node_name(), "cluster node stopped");
    }

    /// Kills the node abruptly, as a crash would (feature `testkit`): every connection is dropped without a
    /// goodbye, nothing more is accepted or reconnected, pending requests fail with
    /// [`ClusterError::Shutdown`]. Peers see their links drop. Wait for the node's tasks
    /// to end with [`wait_stopped`](Self::wait_stopped).
    #[cfg(feature = "testkit")]
    pub fn kill(&self) {
        let node = &self.node;
        if !node.life.begin_shutdown() {
            return;
        }
        node.to_control(Input::Stop(Stop::Crash, None));
        node.life.stopping.cancel();
        node.life.links.cancel();
        node.peers.clear(None);
        node.actors.clear();
        node.requests.fail_all();
        node.life.tasks.close();
        tracing::info!(node = %self.node_name(), "cluster node killed");
    }

    /// Waits until every task of a killed or shut down node has ended (its sockets are closed).
    pub async fn wait_stopped(&self) {
        self.node.life.tasks.wait().await;
    }
}
