//! [`ClusterTestHarness`]: N nodes in one process on ephemeral loopback ports, with the
//! verbs of a multi-node test: impose network conditions, partition and heal, kill,
//! restart and stop nodes, and wait until an assertion holds.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use actix_cluster_runtime::testkit::harness::ClusterTestHarness;
//!
//! let mut h = ClusterTestHarness::start(3).await?;
//! h.partition(&[0], &[1, 2]);
//! h.run_until(Duration::from_secs(10), "node-1 cut off", |h| h.node(0).peers().is_empty()).await?;
//! h.heal();
//! h.wait_for_stability(Duration::from_secs(10)).await?;
//! h.kill(2);
//! h.restart(2).await?;
//! h.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{ClusterConfig, ClusterConfigBuilder};
use crate::error::ClusterError;
use crate::node::ClusterSystem;
use crate::testkit::faults::{LinkConditions, NetworkFaults};

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A node failed to start or restart.
    #[error("cannot start node `{node}`: {source}")]
    Start {
        /// The node.
        node: String,
        /// Why.
        source: ClusterError,
    },
    /// A condition did not hold before the deadline.
    #[error("timed out after {waited:?} waiting for: {what}{detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// The last disagreement seen, if the condition reports one.
        detail: String,
    },
    /// The live nodes disagree on who is in the cluster.
    #[error("cluster is not stable: {0}")]
    Unstable(String),
}

type Configure = Box<dyn Fn(usize, ClusterConfigBuilder) -> ClusterConfigBuilder>;

/// Builds a [`ClusterTestHarness`].
pub struct HarnessBuilder {
    nodes: usize,
    cluster: String,
    seed: u64,
    configure: Configure,
}

impl fmt::Debug for HarnessBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HarnessBuilder").field("nodes", &self.nodes).field("cluster", &self.cluster).finish()
    }
}

impl HarnessBuilder {
    /// Number of nodes (named `node-1` … `node-N`, indexed from 0).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// The cluster name.
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = name.into();
        self
    }

    /// Seeds the fault plan and the nodes' random choices.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Adjusts each node's configuration; called with the node's index and the harness
    /// defaults (short heartbeats and timeouts, fast reconnects).
    pub fn configure(mut self, f: impl Fn(usize, ClusterConfigBuilder) -> ClusterConfigBuilder + 'static) -> Self {
        self.configure = Box::new(f);
        self
    }

    /// Starts the nodes and waits until every node is linked to every other.
    pub async fn start(self) -> Result<ClusterTestHarness, HarnessError> {
        let mut h = ClusterTestHarness {
            cluster: self.cluster,
            faults: NetworkFaults::new(self.seed),
            seed: self.seed,
            configure: self.configure,
            slots: Vec::new(),
        };
        for i in 0..self.nodes {
            let name = format!("node-{}", i + 1);
            let seeds: Vec<String> = h.slots.iter().map(|s| s.addr.to_string()).collect();
            let system = h.start_node(i, &name, "127.0.0.1:0", seeds, 0).await?;
            let addr = system.local_addr();
            h.faults.register_addr(&name, &addr.to_string());
            h.slots.push(Slot { name, addr, system: Some(system), killed: None, incarnation: 0 });
        }
        h.wait_for_stability(Duration::from_secs(30)).await?;
        Ok(h)
    }
}

struct Slot {
    name: String,
    addr: SocketAddr,
    system: Option<ClusterSystem>,
    /// The last incarnation killed, until a restart has waited for it to let go of its
    /// address.
    killed: Option<ClusterSystem>,
    incarnation: u64,
}

/// N cluster nodes in one process, with fault injection on their real links.
pub struct ClusterTestHarness {
    cluster: String,
    faults: NetworkFaults,
    seed: u64,
    configure: Configure,
    slots: Vec<Slot>,
}

impl fmt::Debug for ClusterTestHarness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTestHarness").field("cluster", &self.cluster).field("nodes", &self.names()).finish()
    }
}

impl ClusterTestHarness {
    /// A builder with defaults: 3 nodes, cluster `test`, seed 0.
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder { nodes: 3, cluster: "test".into(), seed: 0, configure: Box::new(|_, b| b) }
    }

    /// Starts `n` nodes with the defaults and waits until they are all linked.
    pub async fn start(n: usize) -> Result<Self, HarnessError> {
        Self::builder().nodes(n).start().await
    }

    /// The configuration the harness gives node `index` before `configure` runs.
    fn defaults(&self, name: &str, bind: &str, seeds: Vec<String>, seed: u64) -> ClusterConfigBuilder {
        ClusterConfig::new()
            .node_name(name)
            .bind(bind)
            .seed_nodes(seeds)
            .heartbeat(Duration::from_millis(100), Duration::from_millis(500))
            .handshake_timeout(Duration::from_secs(1))
            .request_timeout(Duration::from_secs(2))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(300))
            .probe_interval(Duration::from_millis(200))
            .resource_interval(Some(Duration::from_secs(1)))
            .rng_seed(seed)
            .network_faults(self.faults.clone())
    }

    async fn start_node(
        &self,
        index: usize,
        name: &str,
        bind: &str,
        seeds: Vec<String>,
        incarnation: u64,
    ) -> Result<ClusterSystem, HarnessError> {
        let node_seed = self.seed ^ ((index as u64 + 1) << 32) ^ incarnation;
        let builder = (self.configure)(index, self.defaults(name, bind, seeds, node_seed).generation(incarnation + 1));
        let config = builder
            .build()
            .map_err(|e| HarnessError::Start { node: name.to_owned(), source: ClusterError::from(e) })?;
        ClusterSystem::new(self.cluster.clone(), config)
            .start()
            .await
            .map_err(|source| HarnessError::Start { node: name.to_owned(), source: source.into() })
    }

    /// Number of nodes, live or not.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if the harness has no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The nodes' names, by index.
    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.name.clone()).collect()
    }

    /// The name of node `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.slots[index].name
    }

    /// Node `index`. Panics if it is killed or stopped (see [`Self::try_node`]).
    pub fn node(&self, index: usize) -> &ClusterSystem {
        self.try_node(index).unwrap_or_else(|| panic!("{} is not running", self.slots[index].name))
    }

    /// Node `index`, if it is running.
    pub fn try_node(&self, index: usize) -> Option<&ClusterSystem> {
        self.slots.get(index).and_then(|s| s.system.as_ref())
    }

    /// Indexes of the running nodes.
    pub fn live(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i].system.is_some()).collect()
    }

    /// The fault plan, for conditions not covered by the shortcuts below.
    pub fn faults(&self) -> &NetworkFaults {
        &self.faults
    }

    /// Conditions from node `from` to node `to` (one direction).
    pub fn set_link(&self, from: usize, to: usize, conditions: LinkConditions) {
        self.faults.set_link(self.name(from), self.name(to), conditions);
    }

    /// Conditions on every direction between every pair of nodes.
    pub fn set_all(&self, conditions: LinkConditions) {
        self.faults.set_default(conditions);
    }

    /// Partitions the nodes in `a` from those in `b`, both directions.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let a: Vec<&str> = a.iter().map(|&i| self.name(i)).collect();
        let b: Vec<&str> = b.iter().map(|&i| self.name(i)).collect();
        self.faults.partition(&a, &b);
    }

    /// Blocks traffic from `from` to `to` only.
    pub fn partition_one_way(&self, from: usize, to: usize) {
        self.faults.block(self.name(from), self.name(to));
    }

    /// Removes every partition (other conditions stay).
    pub fn heal(&self) {
        self.faults.heal();
    }

    /// Kills node `index` abruptly: connections dropped, no goodbye.
    pub fn kill(&mut self, index: usize) {
        if let Some(system) = self.slots[index].system.take() {
            system.kill();
            self.slots[index].killed = Some(system);
        }
    }

    /// Stops node `index` gracefully (goodbye on every link).
    pub async fn stop(&mut self, index: usize) {
        if let Some(system) = self.slots[index].system.take() {
            system.shutdown().await;
        }
    }

    /// Restarts node `index` with the same name and address and a new incarnation (node
    /// id), linking to every other node. Kills it first if it is running.
    pub async fn restart(&mut self, index: usize) -> Result<&ClusterSystem, HarnessError> {
        if let Some(old) = self.slots[index].system.take() {
            old.kill();
            old.wait_stopped().await;
        }
        // A node killed earlier lets go of its address once its tasks have ended.
        if let Some(old) = self.slots[index].killed.take() {
            old.wait_stopped().await;
        }
        let slot = &self.slots[index];
        let seeds: Vec<String> =
            self.slots.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, s)| s.addr.to_string()).collect();
        let incarnation = slot.incarnation + 1;
        let (name, bind) = (slot.name.clone(), slot.addr.to_string());
        let system = self.start_node(index, &name, &bind, seeds, incarnation).await?;
        let slot = &mut self.slots[index];
        slot.incarnation = incarnation;
        Ok(slot.system.insert(system))
    }

    /// Polls `condition` until it holds or `timeout` passes.
    pub async fn run_until(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&Self) -> bool,
    ) -> Result<(), HarnessError> {
        let started = tokio::time::Instant::now();
        loop {
            if condition(self) {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(HarnessError::Timeout { what: what.to_owned(), waited: timeout, detail: String::new() });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Checks that all running nodes agree on who is in the cluster: each is linked to
    /// exactly the other running nodes and sees exactly the running nodes as members `Up`.
    pub fn verify_cluster_stability(&self) -> Result<(), HarnessError> {
        let live: BTreeSet<String> = self.live().iter().map(|&i| self.slots[i].name.clone()).collect();
        let mut problems = Vec::new();
        for &i in &self.live() {
            let name = &self.slots[i].name;
            let seen: BTreeSet<String> = self.node(i).peers().into_iter().map(|p| p.name).collect();
            let expected: BTreeSet<String> = live.iter().filter(|n| *n != name).cloned().collect();
            if seen != expected {
                let missing: Vec<_> = expected.difference(&seen).collect();
                let extra: Vec<_> = seen.difference(&expected).collect();
                problems.push(format!("{name} has no link to {missing:?}, extra links to {extra:?}"));
            }
            let up = self.node(i).membership().up_members();
            if up != live {
                let missing: Vec<_> = live.difference(&up).collect();
                let extra: Vec<_> = up.difference(&live).collect();
                problems.push(format!("{name} does not see {missing:?} up, sees {extra:?} up"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(HarnessError::Unstable(problems.join("; ")))
        }
    }

    /// Waits until [`verify_cluster_stability`](Self::verify_cluster_stability) passes.
    pub async fn wait_for_stability(&self, timeout: Duration) -> Result<(), HarnessError> {
        let mut last = String::new();
        let res = self
            .run_until(timeout, "all live nodes linked to each other", |h| match h.verify_cluster_stability() {
                Ok(()) => true,
                Err(e) => {
                    last = e.to_string();
                    false
                }
            })
            .await;
        res.map_err(|e| match e {
            HarnessError::Timeout { what, waited, .. } => {
                HarnessError::Timeout { what, waited, detail: format!(" ({last})") }
            }
            other => other,
        })
    }

    /// Stops every running node gracefully.
    pub async fn shutdown(mut self) {
        for i in 0..self.slots.len() {
            self.stop(i).await;
        }
    }
}
