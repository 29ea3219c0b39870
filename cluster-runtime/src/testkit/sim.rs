//! Deterministic simulation (feature `sim`): the same nodes, actors and protocol code over
//! [turmoil](https://docs.rs/turmoil)'s simulated TCP, simulated clock and seeded RNG.
//!
//! Each simulated host runs one [`ClusterSystem`] on turmoil's per-host single-threaded
//! runtime. Node randomness comes from the simulation seed, so one seed gives one run.
//! [`SeedReport`] prints the seed when a run panics, and [`seeds`] reads
//! `ACTIX_CLUSTER_SIM_SEED` to rerun exactly that run.
//!
//! turmoil's TCP does not retransmit across a partition: a stream that spans one stays
//! stalled after repair. Links detect that by heartbeat silence and reconnect.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ClusterConfig;
use crate::node::ClusterSystem;
use crate::transport::network::{BoxStream, LocalFuture, NetListener, Network};

/// Environment variable that pins the seed of simulation runs.
pub const SEED_ENV: &str = "ACTIX_CLUSTER_SIM_SEED";

/// turmoil's simulated TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNetwork;

struct TurmoilListener(turmoil::net::TcpListener);

impl NetListener for TurmoilListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> LocalFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, addr) = self.0.accept().await?;
            Ok((Box::new(stream) as BoxStream, addr))
        })
    }
}

impl Network for TurmoilNetwork {
    fn bind(&self, addr: SocketAddr) -> LocalFuture<'static, io::Result<Box<dyn NetListener>>> {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TurmoilListener(listener)) as Box<dyn NetListener>)
        })
    }

    fn connect(&self, addr: String) -> LocalFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr.as_str()).await?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

/// The seeds to run: the one in `ACTIX_CLUSTER_SIM_SEED` if set, else `count` seeds
/// starting at `first`.
pub fn seeds(first: u64, count: u64) -> Vec<u64> {
    match std::env::var(SEED_ENV).ok().and_then(|s| s.trim().parse().ok()) {
        Some(seed) => vec![seed],
        None => (first..first.saturating_add(count)).collect(),
    }
}

/// Prints the seed and how to rerun it if dropped while the thread panics. Create one at
/// the start of each seeded run.
#[derive(Debug)]
pub struct SeedReport(pub u64);

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("simulation failed with seed {0}; rerun it with {SEED_ENV}={0}", self.0);
        }
    }
}

/// A timestamped log of what simulated nodes saw, shared by all hosts of a run.
#[derive(Debug, Clone, Default)]
pub struct EventLog(Rc<RefCell<Vec<String>>>);

impl EventLog {
    /// Appends `what`, stamped with the simulated time.
    pub fn record(&self, what: impl Into<String>) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        self.0.borrow_mut().push(format!("{:>10.3?} {}", at, what.into()));
    }

    /// The log so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
}

/// A node of a simulation: its name, port, and the running system (if up).
#[derive(Clone)]
pub struct SimNode {
    /// The host and node name.
    pub name: String,
    /// The port it listens on.
    pub port: u16,
    system: Rc<RefCell<Option<ClusterSystem>>>,
    incarnation: Rc<RefCell<u64>>,
    app: Option<App>,
    configure: Option<Configure>,
}

/// Changes a simulated node's configuration before it starts.
pub type Configure = Rc<dyn Fn(crate::config::ClusterConfigBuilder) -> crate::config::ClusterConfigBuilder>;

/// What a simulated node runs once it is up: given its system and incarnation number.
pub type App = Rc<dyn Fn(ClusterSystem, u64) -> LocalFuture<'static, ()>>;

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode").field("name", &self.name).field("port", &self.port).finish()
    }
}

impl SimNode {
    /// A node `name` listening on `port`.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        Self { name: name.into(), port, system: Rc::default(), incarnation: Rc::default(), app: None, configure: None }
    }

    /// Applies `f` to the node's configuration (after the simulation's timings) every time
    /// it starts.
    pub fn configure(
        mut self,
        f: impl Fn(crate::config::ClusterConfigBuilder) -> crate::config::ClusterConfigBuilder + 'static,
    ) -> Self {
        self.configure = Some(Rc::new(f));
        self
    }

    /// Runs `app` on the node every time it starts (after its system is up), as the
    /// application of a real node would.
    pub fn with_app(mut self, app: impl Fn(ClusterSystem, u64) -> LocalFuture<'static, ()> + 'static) -> Self {
        self.app = Some(Rc::new(app));
        self
    }

    /// The running system, if the host is up.
    pub fn system(&self) -> Option<ClusterSystem> {
        self.system.borrow().clone()
    }

    /// The number of the node's current (or last) incarnation, from 1.
    pub fn incarnation(&self) -> u64 {
        *self.incarnation.borrow()
    }

    /// Forgets the system (call after crashing the host).
    pub fn crashed(&self) {
        self.system.borrow_mut().take();
    }

    /// Names of the members the node sees `Up`, itself included (empty if it is down).
    pub fn up_members(&self) -> BTreeSet<String> {
        self.system().map(|s| s.membership().up_members()).unwrap_or_default()
    }

    /// Names of the peers the node is linked to (empty if it is down).
    pub fn peer_names(&self) -> BTreeSet<String> {
        self.system().map(|s| s.peers().into_iter().map(|p| p.name).collect()).unwrap_or_default()
    }

    /// The host closure for `Sim::host`: starts a node of `cluster` with simulation
    /// timings, linking to `seeds` (`host:port`), and logs every change of its links.
    /// Each (re)start is a new incarnation with a node id derived from `seed`, the node's
    /// name and the incarnation number.
    pub fn host(
        &self,
        cluster: &str,
        seeds: Vec<String>,
        seed: u64,
        log: EventLog,
    ) -> impl Fn() -> LocalFuture<'static, turmoil::Result> + 'static {
        let node = self.clone();
        let cluster = cluster.to_owned();
        move || {
            let (node, cluster, seeds, log) = (node.clone(), cluster.clone(), seeds.clone(), log.clone());
            Box::pin(async move {
                let incarnation = {
                    let mut i = node.incarnation.borrow_mut();
                    *i += 1;
                    *i
                };
                let config = ClusterConfig::new()
                    .node_name(node.name.clone())
                    .bind(format!("0.0.0.0:{}", node.port))
                    .seed_nodes(seeds)
                    .network(Arc::new(TurmoilNetwork))
                    .rng_seed(
                        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ crate::proto::wire_id(&node.name) ^ incarnation,
                    )
                    .heartbeat(Duration::from_millis(200), Duration::from_secs(1))
                    .handshake_timeout(Duration::from_secs(1))
                    .request_timeout(Duration::from_secs(2))
                    .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
                    .probe_interval(Duration::from_millis(200))
                    .resource_interval(None)
                    .generation(incarnation);
                let config = match &node.configure {
                    Some(f) => f(config),
                    None => config,
                }
                .build()?;
                let system = ClusterSystem::new(cluster, config).start().await?;
                log.record(format!("{} up (incarnation {incarnation})", node.name));
                *node.system.borrow_mut() = Some(system.clone());
                if let Some(app) = &node.app {
                    tokio::task::spawn_local(app(system.clone(), incarnation));
                }
                let mut links = system.watch_peers();
                let mut members = system.membership().watch();
                let (mut last_links, mut last_up) = (BTreeSet::new(), BTreeSet::new());
                loop {
                    let now: BTreeSet<String> = system.peers().into_iter().map(|p| p.name).collect();
                    if now != last_links {
                        log.record(format!("{} links {:?}", node.name, now));
                        last_links = now;
                    }
                    let up = system.membership().up_members();
                    if up != last_up {
                        log.record(format!("{} sees up {:?}", node.name, up));
                        last_up = up;
                    }
                    tokio::select! {
                        biased;
                        r = links.changed() => if r.is_err() { return Ok(()) },
                        r = members.changed() => if r.is_err() { return Ok(()) },
                    }
                }
            })
        }
    }
}
