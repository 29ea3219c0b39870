//! Starting a node: validate, bind, build the services and the hello, spawn the accept
//! loop, the seed connections and the control task. This is where the kernel
//! ([`node`](crate::node)) and the [`services`] are put together, so neither depends on the other's list.

use std::sync::Arc;

use rand::{rngs::SmallRng, Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::error::{ConfigError, StartError};
use crate::ids::NodeId;
use crate::node::actors::{Actors, OrphanCredit};
use crate::node::clock::Clock;
use crate::node::connect;
use crate::node::driver;
use crate::node::kernel::{Lifecycle, Node};
use crate::node::limits::Limits;
use crate::node::peers::Peers;
use crate::node::requests::Requests;
use crate::node::service::Install;
use crate::node::system::{set_current, ClusterSystem};
use crate::proto::wire::frame::Hello;
use crate::proto::wire::handshake::valid_name;
use crate::services;
use crate::transport::link::LinkSettings;
use crate::types::TypeTable;

/// Prepared, not yet started node. Created by [`ClusterSystem::new`].
#[derive(Debug)]
pub struct ClusterSystemBuilder {
    cluster: String,
    config: ClusterConfig,
}

impl ClusterSystem {
    /// Prepares a node of cluster `cluster` (letters, digits, `-`, `_`, `.`); call
    /// [`start`](ClusterSystemBuilder::start) on the result.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(cluster: impl Into<String>, config: ClusterConfig) -> ClusterSystemBuilder {
        ClusterSystemBuilder { cluster: cluster.into(), config }
    }
}

impl ClusterSystemBuilder {
    /// Binds the listener, starts linking to the seed nodes and returns the running node.
    ///
    /// Must be called inside an actix system (or a tokio `LocalSet`). Fails if the cluster
    /// name is invalid, two registered types share a wire id, or the address cannot be bound.
    pub async fn start(self) -> Result<ClusterSystem, StartError> {
        let Self { cluster, config } = self;
        if !valid_name(&cluster) {
            return Err(ConfigError::InvalidClusterName(cluster).into());
        }
        let types = TypeTable::from_inventory()?;
        let bind = config.bind_addr();
        let bind_error = |source| StartError::Bind { addr: bind.to_string(), source };
        let listener = config.hooks().network.0.bind(bind).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let mut rng = match config.hooks().rng_seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            #[allow(
                clippy::disallowed_methods,
                reason = "an unseeded node draws its seed from the system, as documented"
            )]
            None => SmallRng::from_os_rng(),
        };
        let id = NodeId(rng.random::<u128>());
        let advertised = if local_addr.ip().is_unspecified() {
            format!("{}:{}", config.node_name(), local_addr.port())
        } else {
            local_addr.to_string()
        };
        #[allow(
            clippy::disallowed_methods,
            reason = "the default generation is the wall-clock start time, as documented; the registry \
                      stamps records with wall-clock time (conflict rules) from this origin plus the node's clock"
        )]
        let system_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let generation = config.node().generation.unwrap_or(system_ms);
        let wall_origin_ms = config.hooks().wall_clock_origin_ms.unwrap_or(system_ms);
        let set = services::build(&Install {
            config: &config,
            node_id: id,
            addr: &advertised,
            generation,
            seed: rng.random(),
            wall_origin_ms,
        });
        let mut hello = Hello::new(cluster.clone(), id, config.node_name(), advertised);
        hello.generation = generation;
        hello.profile = config.profile().clone();
        hello.services = set.versions();
        hello.max_frame = u32::try_from(config.transport().max_frame_size).unwrap_or(u32::MAX);
        hello.flow = config.limits().actor_window();
        hello.link_flow = config.limits().link_window();
        let channels = set.services.iter().map(|s| s.channel()).collect();
        let t = config.transport();
        let link_settings = LinkSettings {
            max_frame: t.max_frame_size,
            handshake_timeout: t.handshake_timeout,
            heartbeat_interval: t.heartbeat_interval,
            idle_timeout: t.idle_timeout,
            queue_capacity: t.outbound_queue,
            queue_bytes: t.outbound_queue_bytes,
            shaper: config.hooks().shaper.as_ref().map(|s| s.0.clone()),
            inbound_rate: config.limits().inbound_bytes_per_sec,
        };
        let limits = Limits::new(config.limits().clone());
        let (actors, outlets) = Actors::new(
            config.limits().actor_window(),
            config.limits().link_window(),
            config.transport().max_frame_size,
        );
        let (control, inputs) = mpsc::unbounded_channel();
        let (forwarding, forwards) = mpsc::unbounded_channel();
        let node = Arc::new_cyclic(|me| Node {
            me: me.clone(),
            slot: crate::node::context::Slot::new(me.clone()),
            cluster,
            config,
            id,
            local_addr,
            hello,
            types,
            clock: Clock::start(),
            link_settings,
            peers: Peers::new(),
            requests: Requests::new(),
            actors,
            limits,
            life: Lifecycle::new(),
            dialing: Default::default(),
            next_link: Default::default(),
            channels,
            control,
            service_backlog: Default::default(),
            shared: set.shared,
            forwarding,
        });
        tracing::info!(
            cluster = %node.cluster, node = %node.name(), id = %id, addr = %local_addr,
            "cluster node started"
        );
        let tasks = &node.life.tasks;
        tasks.spawn_local(driver::run(node.clone(), set.services, inputs));
        tasks.spawn_local(connect::accept_loop(node.clone(), listener));
        tasks.spawn_local(return_orphan_credit(node.me.clone(), outlets.orphans, node.life.stopping.clone()));
        tasks.spawn_local(announce_departures(node.me.clone(), outlets.departures, node.life.stopping.clone()));
        tasks.spawn_local(crate::node::forward::run(node.me.clone(), forwards, node.life.stopping.clone()));
        tasks.spawn_local(announce_wakes(node.me.clone(), outlets.woken, node.life.stopping.clone()));
        for seed in node.config.seed_nodes() {
            tasks.spawn_local(connect::seed_loop(node.clone(), seed.clone()));
        }
        set_current(&node);
        Ok(ClusterSystem { node })
    }
}

/// Sends back the credit of tells left in the mailboxes of actors that stopped.
async fn return_orphan_credit(
    node: std::sync::Weak<Node>,
    mut orphans: mpsc::UnboundedReceiver<OrphanCredit>,
    stopping: tokio_util::sync::CancellationToken,
) {
    loop {
        let credit = tokio::select! {
            biased;
            () = stopping.cancelled() => return,
            c = orphans.recv() => c,
        };
        let (Some(c), Some(node)) = (credit, node.upgrade()) else { return };
        node.send_credit(c.link, c.actor, c.bytes, c.msgs);
    }
}

/// Tells the services which passivated activations received a message.
async fn announce_wakes(
    node: std::sync::Weak<Node>,
    mut woken: mpsc::UnboundedReceiver<(crate::ids::LocalActorId, crate::proto::activation::ActivationKey)>,
    stopping: tokio_util::sync::CancellationToken,
) {
    loop {
        let wake = tokio::select! {
            biased;
            () = stopping.cancelled() => return,
            w = woken.recv() => w,
        };
        let (Some((actor, key)), Some(node)) = (wake, node.upgrade()) else { return };
        node.to_control(crate::node::service::Input::Wake(actor, key));
    }
}

/// Tells the services which of the actors they follow stopped.
async fn announce_departures(
    node: std::sync::Weak<Node>,
    mut departures: mpsc::UnboundedReceiver<crate::ids::LocalActorId>,
    stopping: tokio_util::sync::CancellationToken,
) {
    loop {
        let departed = tokio::select! {
            biased;
            () = stopping.cancelled() => return,
            d = departures.recv() => d,
        };
        let (Some(actor), Some(node)) = (departed, node.upgrade()) else { return };
        node.to_control(crate::node::service::Input::ActorStopped(actor));
    }
}
