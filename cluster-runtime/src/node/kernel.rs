//! The node's state: identity, configuration, lifecycle, and the tables the kernel keeps
//! (peers, pending requests, local actors), plus the handle to the control task that owns
//! the services. Behaviour lives in the modules around it: `router` (frames from links),
//! `outbound` (sending), `connect` (links), `driver` (services).

use std::any::Any;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClusterConfig;
use crate::ids::{LinkId, NodeId};
use crate::node::actors::Actors;
use crate::node::clock::Clock;
use crate::node::limits::Limits;
use crate::node::peers::Peers;
use crate::node::requests::Requests;
use crate::node::service::{Input, Shared};
use crate::proto::wire::channel::Channel;
use crate::proto::wire::frame::Hello;
use crate::transport::link::LinkSettings;
use crate::types::TypeTable;

/// Start, stop and the tasks of a node.
pub(crate) struct Lifecycle {
    /// Cancelled when the node stops accepting and reconnecting (shutdown or kill).
    pub(crate) stopping: CancellationToken,
    /// Cancelling this closes every link at once.
    pub(crate) links: CancellationToken,
    /// Every task the node spawns.
    pub(crate) tasks: TaskTracker,
    shut_down: AtomicBool,
}

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Self {
            stopping: CancellationToken::new(),
            links: CancellationToken::new(),
            tasks: TaskTracker::new(),
            shut_down: AtomicBool::new(false),
        }
    }

    /// True once shutdown or kill began.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Marks the node as stopping; false if it already was.
    pub(crate) fn begin_shutdown(&self) -> bool {
        !self.shut_down.swap(true, Ordering::AcqRel)
    }
}

/// The node.
pub(crate) struct Node {
    /// This node, for the tasks it spawns (which must not keep it alive).
    pub(crate) me: Weak<Node>,
    /// Its slot in the table of the nodes that decode on this process's threads.
    pub(crate) slot: crate::node::context::Slot,
    pub(crate) cluster: String,
    pub(crate) config: ClusterConfig,
    pub(crate) id: NodeId,
    pub(crate) local_addr: SocketAddr,
    /// This node's hello, built once.
    pub(crate) hello: Hello,
    pub(crate) types: TypeTable,
    pub(crate) clock: Clock,
    pub(crate) link_settings: LinkSettings,
    pub(crate) peers: Peers,
    pub(crate) requests: Requests,
    pub(crate) actors: Actors,
    pub(crate) limits: Limits,
    pub(crate) life: Lifecycle,
    /// Addresses a connection is under way to.
    pub(crate) dialing: Mutex<BTreeSet<String>>,
    pub(crate) next_link: AtomicU64,
    /// The channels the services listen on.
    pub(crate) channels: Vec<Channel>,
    /// Inputs of the control task.
    pub(crate) control: mpsc::UnboundedSender<Input>,
    /// Service frames handed to the control task and not yet handled.
    pub(crate) service_backlog: AtomicUsize,
    /// What services share with their API handles.
    pub(crate) shared: Shared,
    /// Messages of actors that moved, to forward in order.
    pub(crate) forwarding: mpsc::UnboundedSender<crate::node::actors::Forward>,
}

impl Node {
    /// A new link id.
    pub(crate) fn next_link(&self) -> LinkId {
        LinkId(self.next_link.fetch_add(1, Ordering::Relaxed))
    }

    /// The node's name.
    pub(crate) fn name(&self) -> &str {
        self.config.node_name()
    }

    /// Hands an input to the control task (dropped once it has stopped).
    pub(crate) fn to_control(&self, input: Input) {
        let _ = self.control.send(input);
    }

    /// Runs `work` in a task of the node; it is dropped when the node stops.
    pub(crate) fn spawn_task(&self, work: impl std::future::Future<Output = ()> + 'static) {
        let stopping = self.life.stopping.clone();
        self.life.tasks.spawn_local(async move {
            tokio::select! {
                biased;
                () = stopping.cancelled() => {}
                () = work => {}
            }
        });
    }

    /// The state service `T` shares with its API.
    pub(crate) fn shared<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.shared.get::<T>()
    }

    /// Like [`shared`](Self::shared), borrowed (no reference count touched).
    pub(crate) fn shared_ref<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.shared.get_ref::<T>()
    }
}
