//! The service interface: how a subsystem (membership today; registry, broker, … later)
//! plugs into the node without growing the kernel.
//!
//! Services live on the node's control task ([`driver`](super::driver)), which owns them
//! and calls them one input at a time, so they hold plain state without locks. They talk to
//! the rest of the node only through [`Cx`]: the clock, sending frames on
//! their channel, asking for links, and emitting membership events that every service then
//! receives through [`Service::handle_membership`].

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use crate::error::RemoteError;
use crate::format::Format;
use crate::ids::{ActorTypeId, LocalActorId, NodeId};
use crate::node::peers::PeerInfo;
use crate::proto::membership::MembershipEvent;
use crate::proto::registry::record::ActorLocation;
use crate::proto::wire::channel::{Channel, ServiceVersion};
use crate::proto::wire::frame::{self, Frame};
use crate::transport::link::LinkEnd;

/// How the node stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A graceful shutdown: services say goodbye.
    Leave,
    /// A crash: services stop without a word (`kill`, feature `testkit`).
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    Crash,
}

/// Why a service frame was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ServiceFrameError(pub(crate) String);

/// Figures a service reports for the node's metrics.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    gauges: Vec<(String, String, f64)>,
}

impl Metrics {
    /// Records a gauge.
    pub(crate) fn gauge(&mut self, name: impl Into<String>, help: impl Into<String>, value: f64) {
        self.gauges.push((name.into(), help.into(), value));
    }

    /// The recorded gauges: (name, help, value).
    pub(crate) fn gauges(&self) -> &[(String, String, f64)] {
        &self.gauges
    }
}

/// A subsystem of the node, driven by the control task.
pub(crate) trait Service: Any {
    /// The channel of its frames.
    fn channel(&self) -> Channel;
    /// The version of its frames, announced in the hello.
    fn version(&self) -> u16;
    /// Called once when the node starts.
    fn start(&mut self, _cx: &mut Cx<'_>) {}
    /// A link to `peer` completed its handshake.
    fn handle_link_up(&mut self, _cx: &mut Cx<'_>, _peer: &PeerInfo) {}
    /// The link to `peer` ended.
    fn handle_link_down(&mut self, _cx: &mut Cx<'_>, _peer: &PeerInfo, _end: &LinkEnd) {}
    /// A frame on the service's channel from `from`. An error is logged and the frame
    /// dropped; the link stays up.
    fn handle_frame(&mut self, cx: &mut Cx<'_>, from: &PeerInfo, body: &[u8]) -> Result<(), ServiceFrameError>;
    /// The same, with the frame's shared buffer: a service that keeps parts of the frame
    /// can take them as slices of it instead of copies.
    fn handle_frame_bytes(
        &mut self,
        cx: &mut Cx<'_>,
        from: &PeerInfo,
        body: &bytes::Bytes,
    ) -> Result<(), ServiceFrameError> {
        self.handle_frame(cx, from, body)
    }
    /// A membership event (from the membership service).
    fn handle_membership(&mut self, _cx: &mut Cx<'_>, _event: &MembershipEvent) {}
    /// A local actor marked with [`Kernel::announce_stop`] stopped.
    fn handle_actor_stopped(&mut self, _cx: &mut Cx<'_>, _actor: LocalActorId) {}
    /// Another service told the services something.
    fn handle_notice(&mut self, _cx: &mut Cx<'_>, _notice: &Notice) {}
    /// A message reached passivated keyed activation `actor` (of `key`): it waits for the
    /// key's next activation.
    fn handle_wake(&mut self, _cx: &mut Cx<'_>, _actor: LocalActorId, _key: &crate::proto::activation::ActivationKey) {}
    /// A message reached local actor `actor`, watched with [`Kernel::watch_handled`], since
    /// its state was last taken.
    fn handle_touched(&mut self, _cx: &mut Cx<'_>, _actor: LocalActorId) {}
    /// A guaranteed message for this service (sent to its channel and `key` on this node)
    /// arrived: once it is handled, the service posts `done`'s call on the delivery channel.
    /// Services that take no messages refuse it.
    fn handle_delivered(&mut self, cx: &mut Cx<'_>, delivered: Delivered, done: HandledFn) {
        let e = RemoteError::new(
            crate::error::RemoteErrorKind::UnknownActor,
            format!("the service on channel {} takes no messages (key {})", self.channel(), delivered.key),
        );
        cx.node().post(Channel::DELIVERY, done(Handled::Refused(e)));
    }
    /// The deadline [`poll_timeout`](Self::poll_timeout) gave has passed.
    fn handle_timeout(&mut self, _cx: &mut Cx<'_>, _now: Duration) {}
    /// Called after each of the other entry points: the service sends what that step left
    /// queued (frames batched per peer, deliveries batched per actor).
    fn flush(&mut self, _cx: &mut Cx<'_>) {}
    /// When [`handle_timeout`](Self::handle_timeout) is due next (time since the node started).
    fn poll_timeout(&self) -> Option<Duration> {
        None
    }
    /// Reports figures for the node's metrics.
    fn metrics(&self, _out: &mut Metrics) {}
    /// The node stops.
    fn stop(&mut self, _cx: &mut Cx<'_>, _how: Stop) {}
    /// The service as `Any`, so its API can reach its concrete type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// What the node reports about itself to services.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NodeStats {
    /// Actors reachable from the network.
    pub(crate) actor_count: u64,
    /// Requests waiting for a reply plus frames queued on links.
    pub(crate) in_flight: u64,
}

/// The node as services see it. Implemented by the kernel.
pub(crate) trait Kernel {
    /// This node's name.
    fn node_name(&self) -> &str;
    /// Queues an encoded frame on the link to `peer`; false if there is none or it is full.
    fn send(&self, peer: NodeId, frame: Vec<u8>) -> bool;
    /// Links to node `name` at `addr` unless linked already or a connection is under way.
    fn connect(&self, name: Option<&str>, addr: &str);
    /// Resolves `name` and links to every address found (DNS discovery).
    fn discover(&self, name: &str, port: u16);
    /// Actor count and in-flight figures.
    fn stats(&self) -> NodeStats;
    /// The type of local actor `actor`, if it runs here.
    fn actor_type(&self, actor: LocalActorId) -> Option<ActorTypeId>;
    /// Services are told when local actor `actor` stops; false if it already has.
    fn announce_stop(&self, actor: LocalActorId) -> bool;
    /// Holds local actor `actor`'s inbound messages from now on; false if it is not here.
    fn hold(&self, actor: LocalActorId) -> bool;
    /// Builds an actor of a registered type from its state, its inbound messages held.
    fn build_held(&self, actor_type: ActorTypeId, format: Format, state: &[u8]) -> Result<LocalActorId, RemoteError>;
    /// Delivers held actor `actor`'s messages to it, in order, and lets it take messages again.
    fn resume(&self, actor: LocalActorId);
    /// Stops local actor `actor` (a held one, without delivering its messages).
    fn discard(&self, actor: LocalActorId);
    /// Held actor `actor` moved to `to`: its held messages are forwarded there in order,
    /// then `then` (a frame on `then.1` to node `then.0`) goes out on the same link; the
    /// actor stops here, and what is still sent to it is forwarded for `grace`.
    fn move_away(
        &self,
        actor: LocalActorId,
        to: ActorLocation,
        then: Option<(NodeId, Channel, Vec<u8>)>,
        grace: Duration,
    );
    /// Runs `work` in a task of the node; the call it ends with goes to the service on
    /// `channel`, like an API call.
    fn spawn_call(&self, channel: Channel, work: Pin<Box<dyn Future<Output = Option<Call>>>>);
    /// Marks local actor `actor` as the activation of `key`; false if it is not here.
    fn mark_keyed(
        &self,
        actor: LocalActorId,
        key: crate::proto::activation::ActivationKey,
        identity: crate::ids::ActorId,
    ) -> bool;
    /// Every keyed activation here that takes messages: its key, identity, and how many
    /// messages reached it so far.
    fn keyed_activity(&self) -> Vec<crate::node::actors::KeyedActivity>;
    /// Local actors of keyed types a peer spawned that never became a key's activation.
    fn unclaimed_keyed(&self) -> Vec<LocalActorId>;
    /// True if local actor `actor`'s inbound messages are held (it is moving, yielding or
    /// being passivated).
    fn is_held(&self, actor: LocalActorId) -> bool;
    /// The key local actor `actor` is the activation of, if it is one (held or not).
    fn key_of(&self, actor: LocalActorId) -> Option<crate::proto::activation::ActivationKey>;
    /// Every keyed actor type registered here: its idle period, and whether it is placed
    /// by consistent hashing of the key.
    fn keyed_policies(&self) -> Vec<(ActorTypeId, Option<Duration>, bool)>;
    /// Passivates held keyed activation `actor` if nothing reached it while held (it stops;
    /// later messages wait for the next activation); false if something did.
    fn passivate(&self, actor: LocalActorId, key: crate::proto::activation::ActivationKey) -> bool;
    /// The next activation of passivated `actor` runs at `to`: what waited is forwarded
    /// there in order, and what still comes is, for `grace`.
    fn release_passivated(&self, actor: LocalActorId, to: ActorLocation, grace: Duration);
    /// Activates `key` here (a keyed type registered here); `None` if its type is not.
    fn activate_key(&self, key: &crate::proto::activation::ActivationKey) -> Option<LocalActorId>;
    /// Asks local actor `actor` for its serialized state, in mailbox order.
    fn take_state(&self, actor: LocalActorId) -> Option<crate::dispatch::StateFuture>;
    /// Tells every service `notice` (after the current input).
    fn notify(&self, notice: Notice);
    /// Services hear ([`Service::handle_touched`]) of the first message that reaches local
    /// actor `actor` after each [`snapshot`](Self::snapshot); false if it is not here.
    fn watch_handled(&self, actor: LocalActorId) -> bool;
    /// Asks local actor `actor` for its serialized state, in mailbox order, for a snapshot.
    fn snapshot(&self, actor: LocalActorId) -> Option<crate::dispatch::StateFuture>;
    /// The recovery policy of actor type `actor_type`, if it has one.
    fn recovery_policy(&self, actor_type: ActorTypeId) -> Option<&'static crate::types::RecoveryRegistration>;
    /// Local actor `actor` no longer stops with the node that spawned it (it is recovered
    /// elsewhere if that node is lost); false if it is not here.
    fn detach(&self, actor: LocalActorId) -> bool;
    /// Hands `call` to the service on `channel` (after the current input).
    fn post(&self, channel: Channel, call: Call);
    /// Whether local actor `target` runs here and takes `message` (nothing is delivered).
    fn accepts(&self, target: LocalActorId, message: crate::ids::WireId) -> Result<(), RemoteError>;
    /// Delivers a guaranteed message to local actor `target` like a remote ask: into its
    /// mailbox, or held with its other messages while it is held (moving, yielding,
    /// passivated). Once the handler has run, or it is certain the message will not be
    /// handled here, `done` makes of the outcome a call to the service on `channel`.
    fn deliver(
        &self,
        channel: Channel,
        target: LocalActorId,
        message: crate::ids::WireId,
        format: Format,
        payload: bytes::Bytes,
        done: HandledFn,
    );
    /// Delivers `items` to local actor `target`, in order, each as [`deliver`](Self::deliver)
    /// would; `done` makes of all their outcomes (in the items' order) one call to the
    /// service on `channel`, once every outcome is known. A tell whose handler answers
    /// when it returns is sent as a tell, and one probe after the batch's tells says they
    /// were handled (mailbox order); asks, and messages whose handlers answer later, go as
    /// asks.
    fn deliver_batch(&self, channel: Channel, target: LocalActorId, items: Vec<BatchItem>, done: BatchDoneFn);
}

/// One message of a [`Kernel::deliver_batch`].
#[derive(Debug)]
pub(crate) struct BatchItem {
    /// Its type.
    pub(crate) message: crate::ids::WireId,
    /// Its format.
    pub(crate) format: Format,
    /// The encoded message.
    pub(crate) payload: bytes::Bytes,
    /// The handler's result is wanted.
    pub(crate) reply: bool,
}

/// Makes of a batch's outcomes a call to the service that delivered it.
pub(crate) type BatchDoneFn = Box<dyn FnOnce(Vec<Handled>) -> Call + Send>;

/// A guaranteed message for a service ([`Service::handle_delivered`]).
#[derive(Debug)]
pub(crate) struct Delivered {
    /// What the service delivers it to (a topic).
    pub(crate) key: String,
    /// Its type.
    pub(crate) message: crate::ids::WireId,
    /// Its format.
    pub(crate) format: Format,
    /// The encoded message.
    pub(crate) payload: bytes::Bytes,
}

/// What became of a message given to [`Kernel::deliver`].
#[derive(Debug)]
pub(crate) enum Handled {
    /// The handler ran: its encoded result.
    Done(Vec<u8>),
    /// Not handled here: the actor runs there now.
    Moved(ActorLocation),
    /// Not handled, and it will not be here: why.
    Refused(RemoteError),
}

/// Makes of what became of a message given to [`Kernel::deliver`] a call to a service.
pub(crate) type HandledFn = Box<dyn FnOnce(Handled) -> Call + Send>;

/// What one service tells the others (through the control task, after the current input).
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// Local actor `actor` (identity `identity`) got a directory record under `key`.
    Registered {
        /// The actor, here.
        actor: LocalActorId,
        /// Its identity.
        identity: crate::ids::ActorId,
        /// The record's key.
        key: crate::proto::registry::record::DirKey,
    },
    /// Local actor `actor` no longer has its records here: it stopped,
    /// was passivated, or moved to node `moved_to`.
    Unhosted {
        /// The actor, here.
        actor: LocalActorId,
        /// Where it moved.
        moved_to: Option<String>,
    },
    /// Local keyed activations `actors` may not be `key`'s activation any more (one lost a
    /// conflict after a partition healed, or an arriving one took over the record of
    /// another here): the directory decides which stays.
    KeyedContested {
        /// The key.
        key: crate::proto::activation::ActivationKey,
        /// The activations, here.
        actors: Vec<LocalActorId>,
    },
}

/// A service's view of the node during one call.
pub(crate) struct Cx<'a> {
    pub(crate) now: Duration,
    pub(crate) channel: Channel,
    pub(crate) kernel: &'a dyn Kernel,
    pub(crate) events: &'a mut Vec<MembershipEvent>,
}

impl Cx<'_> {
    /// Time since the node started.
    pub(crate) fn now(&self) -> Duration {
        self.now
    }

    /// The node.
    pub(crate) fn node(&self) -> &dyn Kernel {
        self.kernel
    }

    /// Sends `body` on the service's channel to `peer`; false if it could not be queued.
    pub(crate) fn send(&mut self, peer: NodeId, body: &[u8]) -> bool {
        match frame::encode(&Frame::Service { channel: self.channel, body }) {
            Ok(bytes) => self.kernel.send(peer, bytes),
            Err(e) => {
                tracing::error!(channel = %self.channel, error = %e, "cannot encode a service frame");
                false
            }
        }
    }

    /// Sends `body` to every node in `peers`, encoded once.
    pub(crate) fn broadcast(&mut self, peers: &[NodeId], body: &[u8]) {
        let Ok(bytes) = frame::encode(&Frame::Service { channel: self.channel, body }) else { return };
        for peer in peers {
            self.kernel.send(*peer, bytes.clone());
        }
    }

    /// Emits a membership event to every service (after the current call).
    pub(crate) fn emit(&mut self, event: MembershipEvent) {
        self.events.push(event);
    }
}

/// State a service shares with its API handle, found by type.
#[derive(Default)]
pub(crate) struct Shared(crate::ids::IdMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl Shared {
    /// The shared state of type `T`.
    pub(crate) fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.get(&TypeId::of::<T>()).cloned().and_then(|a| a.downcast::<T>().ok())
    }

    /// The shared state of type `T`, borrowed.
    pub(crate) fn get_ref<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|a| a.downcast_ref::<T>())
    }
}

/// What a service is built from.
pub(crate) struct Install<'a> {
    /// The node's configuration.
    pub(crate) config: &'a crate::config::ClusterConfig,
    /// The node's id.
    pub(crate) node_id: NodeId,
    /// The address the node advertises.
    pub(crate) addr: &'a str,
    /// The node's incarnation generation.
    pub(crate) generation: u64,
    /// A seed for the service's own randomness, drawn from the node's RNG.
    pub(crate) seed: u64,
    /// The wall-clock time when the node started, in ms since the Unix epoch (services add
    /// their `now` to it).
    pub(crate) wall_origin_ms: u64,
}

/// The services of a node, in the order they were added.
#[derive(Default)]
pub(crate) struct ServiceSet {
    pub(crate) services: Vec<Box<dyn Service>>,
    pub(crate) shared: Shared,
}

impl ServiceSet {
    /// Adds a service and the state its API reads.
    pub(crate) fn add<S: Service, T: Any + Send + Sync>(&mut self, (service, shared): (S, Arc<T>)) {
        self.services.push(Box::new(service));
        self.shared.0.insert(TypeId::of::<T>(), shared);
    }

    /// The services and versions to announce in the hello.
    pub(crate) fn versions(&self) -> Vec<ServiceVersion> {
        self.services.iter().map(|s| ServiceVersion { channel: s.channel(), version: s.version() }).collect()
    }
}

/// A call into a service from its API, run on the control task.
pub(crate) type Call = Box<dyn FnOnce(&mut dyn Service, &mut Cx<'_>) + Send>;

/// A call that runs `f` on the service of type `S` (post it on that service's channel).
pub(crate) fn call_on<S: Service>(f: impl FnOnce(&mut S, &mut Cx<'_>) + Send + 'static) -> Call {
    Box::new(move |service: &mut dyn Service, cx: &mut Cx<'_>| {
        if let Some(s) = service.as_any_mut().downcast_mut::<S>() {
            f(s, cx);
        }
    })
}

/// What the control task receives.
pub(crate) enum Input {
    /// A link came up.
    LinkUp(PeerInfo),
    /// A link ended.
    LinkDown(PeerInfo, LinkEnd),
    /// A service frame arrived.
    Frame {
        /// The sending peer.
        from: NodeId,
        /// The channel.
        channel: Channel,
        /// The service's body (a slice of the received buffer).
        body: bytes::Bytes,
    },
    /// An API call for the service on `channel`.
    Call(Channel, Call),
    /// A local actor the services follow stopped.
    ActorStopped(LocalActorId),
    /// A message reached watched actor `.0` since its last snapshot.
    Touched(LocalActorId),
    /// A message reached passivated keyed activation `.0` (of key `.1`).
    Wake(LocalActorId, crate::proto::activation::ActivationKey),
    /// A service tells the others something.
    Notice(Notice),
    /// The services' metrics are wanted.
    Metrics(tokio::sync::oneshot::Sender<Metrics>),
    /// The node stops; answered once every service has stopped.
    Stop(Stop, Option<tokio::sync::oneshot::Sender<()>>),
}
