//! Recovery on live in-process clusters: actors with `recovery = "restart"` keep their
//! latest snapshot on other nodes (`replicas = N`) and come back from it on a survivor when
//! their node is killed: keyed actors on their key's next message, others at once, with
//! their identity and names; without replicas they restart from `Default`.

use std::time::{Duration, Instant};

mod support;

use actix_cluster::prelude::*;
use actix_cluster::testkit::harness::ClusterTestHarness;
use futures_util::future::join_all;

const DEADLINE: Duration = Duration::from_secs(30);

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Bump;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Total;

/// A keyed counter whose count survives the loss of its node.
#[distributed_actor(messages(Bump, Total), keyed = "key", recovery = "restart", replicas = 1)]
#[derive(Default, Serialize, Deserialize)]
struct Tally {
    key: String,
    count: u64,
}

impl Handler<Bump> for Tally {
    type Result = u64;
    fn handle(&mut self, _: Bump, _: &mut Context<Self>) -> u64 {
        self.count += 1;
        self.count
    }
}

impl Handler<Total> for Tally {
    type Result = u64;
    fn handle(&mut self, _: Total, _: &mut Context<Self>) -> u64 {
        self.count
    }
}

/// A named ledger (not keyed) re-created at once with its identity and name, from its last
/// snapshot taken every 20 ms.
#[distributed_actor(messages(Bump, Total), recovery = "restart", replicas = 2, snapshot_every = "20ms")]
#[derive(Default, Serialize, Deserialize)]
struct Ledger {
    count: u64,
}

impl Handler<Bump> for Ledger {
    type Result = u64;
    fn handle(&mut self, _: Bump, _: &mut Context<Self>) -> u64 {
        self.count += 1;
        self.count
    }
}

impl Handler<Total> for Ledger {
    type Result = u64;
    fn handle(&mut self, _: Total, _: &mut Context<Self>) -> u64 {
        self.count
    }
}

/// Restarts from `Default` (it keeps no replicas).
#[distributed_actor(messages(Bump, Total), recovery = "restart")]
#[derive(Default, Serialize, Deserialize)]
struct Scratch {
    count: u64,
}

impl Handler<Bump> for Scratch {
    type Result = u64;
    fn handle(&mut self, _: Bump, _: &mut Context<Self>) -> u64 {
        self.count += 1;
        self.count
    }
}

impl Handler<Total> for Scratch {
    type Result = u64;
    fn handle(&mut self, _: Total, _: &mut Context<Self>) -> u64 {
        self.count
    }
}

/// Waits until no node has state its holders have not confirmed.
async fn replicated(h: &ClusterTestHarness) {
    let started = Instant::now();
    loop {
        let mut pending = 0;
        for i in h.live() {
            pending += h.node(i).recovery().stats().await.unconfirmed;
        }
        if pending == 0 {
            return;
        }
        assert!(started.elapsed() < DEADLINE, "{pending} actors' snapshots never confirmed");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn keyed_actors_of_a_killed_node_come_back_from_their_snapshots() {
    let mut h = ClusterTestHarness::start(4).await.expect("harness");
    let keys: Vec<String> = (0..80).map(|k| format!("tally-{k}")).collect();
    for round in 1..=3u64 {
        let counts = join_all(keys.iter().map(|k| {
            let t = h.node(0).actor_for::<Tally>(k.clone());
            async move { t.send(Bump).await }
        }))
        .await;
        assert!(counts.into_iter().all(|c| c.expect("bump") == round));
    }
    replicated(&h).await;
    let held: usize = {
        let mut n = 0;
        for i in 0..4 {
            n += h.node(i).recovery().stats().await.held;
        }
        n
    };
    assert_eq!(held, keys.len(), "one replica per key");
    // Kill the node (not node 0) hosting the most keys.
    let mut on = [0usize; 4];
    for k in &keys {
        let t = h.node(0).actor_for::<Tally>(k.clone());
        t.send(Total).await.expect("total");
        let node = t.location().expect("activated").node;
        on[(1..4).find(|i| h.name(*i) == node).unwrap_or(0)] += 1;
    }
    let victim = (1..4).max_by_key(|i| on[*i]).expect("a victim");
    let killed = Instant::now();
    h.kill(victim);
    let totals = join_all(keys.iter().map(|k| {
        let t = h.node(0).actor_for::<Tally>(k.clone());
        async move { support::eventually("a key answers again", DEADLINE, || t.send(Total)).await }
    }))
    .await;
    let took = killed.elapsed();
    for (k, total) in keys.iter().zip(&totals) {
        assert_eq!(*total, 3, "{k}: back from its last confirmed snapshot");
    }
    let mut recovered = 0;
    for i in h.live() {
        recovered += h.node(i).recovery().stats().await.recovered;
    }
    assert_eq!(recovered as usize, on[victim], "each of the victim's keys came back from its replica once");
    println!(
        "recovery: {} keyed actors of a killed node back from their snapshots in {took:?} (detection included)",
        on[victim]
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_named_actor_is_recreated_with_its_identity_and_name_and_without_replicas_from_default() {
    let mut h = ClusterTestHarness::start(3).await.expect("harness");
    let ledger = h.node(2).spawn(Ledger::default()).placement(Placement::Local).name("ledger").await.expect("spawn");
    let scratch = h.node(2).spawn(Scratch::default()).placement(Placement::Local).name("scratch").await.expect("spawn");
    for n in 1..=5 {
        assert_eq!(ledger.send(Bump).await.expect("bump"), n);
        assert_eq!(scratch.send(Bump).await.expect("bump"), n);
    }
    replicated(&h).await;
    let identity = ledger.identity();
    // A handle on node-1 to the ledger where it runs now.
    let old = h.node(0).registry().lookup::<Ledger>("ledger").await.expect("lookup").expect("registered");
    let victim = h.name(2).to_owned();
    h.kill(2);
    // Found again by name, with its state: re-created at once, before any message.
    let found = support::eventually("the ledger is found by name", DEADLINE, || async {
        match h.node(0).registry().lookup::<Ledger>("ledger").await? {
            Some(l) if l.location().is_some_and(|at| at.node != victim) => Ok(l),
            _ => Err(ClusterError::Timeout(Duration::ZERO)),
        }
    })
    .await;
    assert_eq!(found.identity(), identity, "the same identity");
    assert_eq!(found.send(Total).await.expect("total"), 5, "its last snapshot");
    // The old handle finds it through its identity.
    assert_eq!(support::eventually("the old handle", DEADLINE, || old.send(Bump)).await, 6);
    let scratch = support::eventually("the scratch actor is found by name", DEADLINE, || async {
        match h.node(0).registry().lookup::<Scratch>("scratch").await? {
            Some(s) if s.location().is_some_and(|at| at.node != victim) => Ok(s),
            _ => Err(ClusterError::Timeout(Duration::ZERO)),
        }
    })
    .await;
    assert_eq!(scratch.send(Total).await.expect("total"), 0, "restarted from Default");
    h.shutdown().await;
}
