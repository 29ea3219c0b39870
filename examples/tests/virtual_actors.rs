//! Keyed (virtual) actors on live in-process clusters: `actor_for` from any node reaches the
//! key's one activation, placed by consistent hashing; racing first messages make one
//! activation; a key whose node is killed activates again on a survivor.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::testkit::harness::ClusterTestHarness;
use futures_util::future::join_all;

const DEADLINE: Duration = Duration::from_secs(30);

/// Every instance gets its own number, so replies say which activation answered.
static INSTANCES: AtomicU64 = AtomicU64::new(1);

#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

/// (instance, key, total, messages handled)
#[cluster_message(result = "(u64, String, u64, u64)")]
#[derive(Serialize, Deserialize)]
struct Get;

#[distributed_actor(messages(Add, Get), keyed)]
#[derive(Serialize, Deserialize)]
struct Cart {
    instance: u64,
    key: String,
    total: u64,
    handled: u64,
}

impl KeyedActor for Cart {
    fn from_key(key: &str) -> Self {
        Cart { instance: INSTANCES.fetch_add(1, Ordering::Relaxed), key: key.to_owned(), total: 0, handled: 0 }
    }
}

impl Handler<Add> for Cart {
    type Result = ();
    fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) {
        self.total += n;
        self.handled += 1;
    }
}

impl Handler<Get> for Cart {
    type Result = MessageResult<Get>;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        MessageResult((self.instance, self.key.clone(), self.total, self.handled))
    }
}

#[actix_rt::test]
async fn every_node_reaches_the_one_activation_of_each_key() {
    let h = ClusterTestHarness::start(4).await.expect("harness");
    let keys: Vec<String> = (0..60).map(|k| format!("cart-{k}")).collect();
    let before: usize = (0..4).map(|i| h.node(i).local_actor_count()).sum();
    // The handle needs no round trip; the tells wait for the activation, in order.
    let mut first = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        let cart = h.node(k % 4).actor_for::<Cart>(key.clone());
        assert_eq!(cart.key(), Some(key.as_str()));
        assert!(cart.location().is_none(), "not activated before its first message");
        for n in 1..=3 {
            cart.do_send(Add(n)).expect("queued");
        }
        first.push(cart);
    }
    // Through the same handle, an ask comes after its tells.
    for (cart, answer) in first.iter().zip(join_all(first.iter().map(|c| c.send(Get))).await) {
        let (_, _, total, _) = answer.expect("ask");
        assert_eq!(total, 6, "{:?}: the three tells sent before activation arrived first", cart.key());
    }
    // From every node: the same instance, with every tell in.
    let mut instance_of: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..4 {
        let node = h.node(i);
        let answers = join_all(keys.iter().map(|key| {
            let cart = node.actor_for::<Cart>(key.clone());
            async move { cart.send(Get).await }
        }))
        .await;
        for (key, answer) in keys.iter().zip(answers) {
            let (instance, k, total, _) = answer.expect("ask");
            assert_eq!(&k, key);
            assert_eq!(total, 6, "{key}");
            assert_eq!(*instance_of.entry(key.clone()).or_insert(instance), instance, "{key}: one activation");
        }
    }
    // Placed by consistent hashing: spread over the nodes, the same node from every node.
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for key in &keys {
        let a = h.node(0).actor_for::<Cart>(key.clone());
        a.send(Get).await.expect("ask");
        let node = a.location().expect("activated").node;
        let b = h.node(3).actor_for::<Cart>(key.clone());
        b.send(Get).await.expect("ask");
        assert_eq!(b.location().expect("activated").node, node, "{key}");
        *per_node.entry(node).or_default() += 1;
    }
    println!("virtual actors: 60 keys activated over 4 nodes as {per_node:?}");
    assert_eq!(per_node.len(), 4, "{per_node:?}");
    let after: usize = (0..4).map(|i| h.node(i).local_actor_count()).sum();
    assert_eq!(after - before, keys.len(), "exactly one live activation per key");
    h.shutdown().await;
}

#[actix_rt::test]
async fn racing_first_messages_make_one_activation() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let before: usize = (0..3).map(|i| h.node(i).local_actor_count()).sum();
    for round in 0..20 {
        let key = format!("race-{round}");
        // Every node sends the key's first message at once.
        let asks = (0..3).map(|i| {
            let cart = h.node(i).actor_for::<Cart>(key.clone());
            async move { cart.send(Get).await }
        });
        let instances: BTreeSet<u64> = join_all(asks).await.into_iter().map(|a| a.expect("ask").0).collect();
        assert_eq!(instances.len(), 1, "{key}: answered by {instances:?}");
    }
    // The losing instances were stopped.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let after: usize = (0..3).map(|i| h.node(i).local_actor_count()).sum();
        if after - before == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{} activations for 20 keys", after - before);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_key_whose_node_is_killed_activates_again_on_a_survivor() {
    let mut h = ClusterTestHarness::start(4).await.expect("harness");
    let keys: Vec<String> = (0..40).map(|k| format!("k-{k}")).collect();
    let handles: Vec<ActorRef<Cart>> = keys.iter().map(|k| h.node(0).actor_for::<Cart>(k.clone())).collect();
    for cart in &handles {
        cart.tell(Add(1)).await.expect("tell");
        cart.send(Get).await.expect("ask");
    }
    let on_3: Vec<usize> =
        (0..keys.len()).filter(|i| handles[*i].location().is_some_and(|l| l.node == "node-3")).collect();
    assert!(!on_3.is_empty(), "consistent hashing put some keys on node-3");
    let killed = Instant::now();
    h.kill(2);
    // Every key answers again through the same handles (re-activated keys start afresh).
    for (i, cart) in handles.iter().enumerate() {
        let deadline = Instant::now() + DEADLINE;
        let (_, _, total, _) = loop {
            match cart.send(Get).await {
                Ok(answer) => break answer,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{}: {e}", keys[i]);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let node = cart.location().expect("activated").node;
        assert_ne!(node, "node-3", "{}", keys[i]);
        assert_eq!(total, if on_3.contains(&i) { 0 } else { 1 }, "{}", keys[i]);
    }
    println!(
        "virtual actors: {} keys of a killed node answered again from survivors after {:?}",
        on_3.len(),
        killed.elapsed()
    );
    h.shutdown().await;
}

/// Every message any `Idle` activation handled, by key, across activations.
fn delivered() -> &'static std::sync::Mutex<BTreeMap<String, u64>> {
    static DELIVERED: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, u64>>> = std::sync::OnceLock::new();
    DELIVERED.get_or_init(Default::default)
}

#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Ping;

/// Messages this activation handled.
#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Pings;

/// Passivated after 300 ms without a message.
#[distributed_actor(messages(Ping, Pings), keyed)]
#[derive(Default, Serialize, Deserialize)]
struct Idle {
    key: String,
    pings: u64,
}

impl KeyedActor for Idle {
    fn from_key(key: &str) -> Self {
        Idle { key: key.to_owned(), pings: 0 }
    }

    fn passivate_after() -> Option<Duration> {
        Some(Duration::from_millis(300))
    }
}

impl Handler<Ping> for Idle {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {
        self.pings += 1;
        *delivered().lock().expect("lock").entry(self.key.clone()).or_default() += 1;
    }
}

impl Handler<Pings> for Idle {
    type Result = u64;
    fn handle(&mut self, _: Pings, _: &mut Context<Self>) -> u64 {
        self.pings
    }
}

async fn activations(h: &ClusterTestHarness, baseline: usize) -> usize {
    (0..h.len()).map(|i| h.node(i).local_actor_count()).sum::<usize>() - baseline
}

#[actix_rt::test]
async fn idle_activations_are_passivated_and_a_message_for_one_is_never_lost() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let baseline: usize = (0..3).map(|i| h.node(i).local_actor_count()).sum();
    let keys: Vec<String> = (0..30).map(|k| format!("idle-{k}")).collect();
    let handles: Vec<ActorRef<Idle>> = keys.iter().map(|k| h.node(0).actor_for::<Idle>(k.clone())).collect();
    for idle in &handles {
        idle.tell(Ping).await.expect("tell");
        assert_eq!(idle.send(Pings).await.expect("ask"), 1);
    }
    assert_eq!(activations(&h, baseline).await, 30);
    // Idle: every activation goes within 1.5 × 300 ms (plus a sweep).
    let deadline = Instant::now() + DEADLINE;
    while activations(&h, baseline).await > 0 {
        assert!(Instant::now() < deadline, "{} activations left", activations(&h, baseline).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The handles still name the passivated activations: what they send waits for the next one.
    for idle in &handles {
        idle.do_send(Ping).expect("tell to a passivated activation");
        idle.do_send(Ping).expect("tell");
        assert_eq!(idle.send(Pings).await.expect("ask after the tells"), 2, "the next activation got both, in order");
    }
    for key in &keys {
        assert_eq!(delivered().lock().expect("lock").get(key), Some(&3), "{key}: every ping delivered once");
    }
    h.shutdown().await;
}

#[actix_rt::test]
async fn messages_sent_while_activations_come_and_go_are_all_delivered() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let keys: Vec<String> = (0..10).map(|k| format!("churn-{k}")).collect();
    let mut sent = 0u64;
    // Bursts spaced around the idle period, from every node, so messages meet activations
    // being passivated, passivated ones, and new ones.
    for round in 0..8u64 {
        for (k, key) in keys.iter().enumerate() {
            let idle = h.node((k + round as usize) % 3).actor_for::<Idle>(key.clone());
            idle.do_send(Ping).expect("tell");
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(150 + 60 * (round % 4))).await;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got: u64 = keys.iter().map(|k| delivered().lock().expect("lock").get(k).copied().unwrap_or(0)).sum();
        if got == sent {
            break;
        }
        assert!(got < sent, "delivered {got} of {sent}: duplicates");
        assert!(Instant::now() < deadline, "delivered {got} of {sent}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.shutdown().await;
}

/// A keyed counter that keeps its count across moves.
#[distributed_actor(messages(Add, Get), keyed = "key")]
#[derive(Default, Serialize, Deserialize)]
struct Tally {
    key: String,
    total: u64,
    handled: u64,
}

impl Handler<Add> for Tally {
    type Result = ();
    fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) {
        self.total += n;
        self.handled += 1;
    }
}

impl Handler<Get> for Tally {
    type Result = MessageResult<Get>;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        MessageResult((0, self.key.clone(), self.total, self.handled))
    }
}

fn tallies(h: &ClusterTestHarness, i: usize, baseline: &[usize]) -> usize {
    h.try_node(i).map_or(0, |n| n.local_actor_count() - baseline[i])
}

#[actix_rt::test]
async fn a_joining_node_takes_its_keys_a_batch_at_a_time_with_their_state() {
    let mut h = ClusterTestHarness::builder()
        .nodes(4)
        .configure(|_, c| {
            c.migration(actix_cluster::MigrationConfig {
                rebalance_batch: 3,
                rebalance_interval: Duration::from_millis(100),
                ..Default::default()
            })
        })
        .start()
        .await
        .expect("harness");
    h.stop(3).await;
    for i in 0..3 {
        let node = h.node(i).clone();
        let deadline = Instant::now() + DEADLINE;
        while node.membership().up_members().len() != 3 {
            assert!(Instant::now() < deadline, "node-4 never left");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let baseline: Vec<usize> = (0..4).map(|i| h.try_node(i).map_or(0, |n| n.local_actor_count())).collect();
    let keys: Vec<String> = (0..60).map(|k| format!("tally-{k}")).collect();
    let handles: Vec<ActorRef<Tally>> = keys.iter().map(|k| h.node(0).actor_for::<Tally>(k.clone())).collect();
    for t in &handles {
        t.tell(Add(5)).await.expect("tell");
        t.send(Get).await.expect("ask");
    }
    let four = ["node-1", "node-2", "node-3", "node-4"];
    let theirs =
        keys.iter().filter(|k| actix_cluster_runtime::proto::registry::ring::owner(k, four) == Some("node-4")).count();
    assert!(theirs > 3, "consistent hashing gives node-4 some of the keys: {theirs}");
    // node-4 comes back: the keys it owns move to it, a few per interval.
    h.restart(3).await.expect("restart");
    let joined = Instant::now();
    let mut timeline = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let on_4 = tallies(&h, 3, &baseline);
        if timeline.last() != Some(&on_4) {
            timeline.push(on_4);
        }
        // Every key on node-4, and every move finished (a build waiting for its commit and
        // its source both count until then).
        let total: usize = (0..4).map(|i| tallies(&h, i, &baseline)).sum();
        if on_4 == theirs && total == keys.len() {
            break;
        }
        assert!(Instant::now() < deadline, "node-4 has {on_4} of its {theirs} keys");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let moved_in = joined.elapsed();
    println!("virtual actors: a joining node took its {theirs} of 60 keys in {moved_in:?}; keys there over time: {timeline:?}");
    assert!(timeline.iter().all(|n| *n <= theirs));
    assert!(timeline.len() > 2, "in batches, not all at once: {timeline:?}");
    // One activation per key, each with its count, through the old handles.
    for t in &handles {
        let (_, _, sum, handled) = t.send(Get).await.expect("ask after the move");
        assert_eq!((sum, handled), (5, 3), "{:?}", t.key());
    }
    h.shutdown().await;
}

/// Keyed handles on the node of their activation send through its hold while it moves:
/// every tell and ask reaches it once, and the count it moves with stays whole.
#[actix_rt::test]
async fn local_keyed_handles_lose_nothing_while_their_activation_moves() {
    let h = ClusterTestHarness::start(2).await.expect("harness");
    let two = ["node-1", "node-2"];
    // Keys consistent hashing places on node-1, where the handles are.
    let keys: Vec<String> = (0..)
        .map(|k| format!("local-{k}"))
        .filter(|k| actix_cluster_runtime::proto::registry::ring::owner(k, two) == Some("node-1"))
        .take(4)
        .collect();
    let moving = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Each key's handle on node-1 tells (and now and then asks) until every move is done.
    let senders = keys.iter().map(|key| {
        let tally = h.node(0).actor_for::<Tally>(key.clone());
        let moving = moving.clone();
        async move {
            let (mut tells, mut asks) = (0u64, 0u64);
            while moving.load(Ordering::Relaxed) || tells < 100 {
                tally.tell(Add(1)).await.expect("tell");
                tells += 1;
                if tells % 25 == 0 {
                    let (_, _, total, _) = tally.send(Get).await.expect("ask");
                    assert_eq!(total, tells, "an ask sees every tell before it");
                    asks += 1;
                }
                tokio::task::yield_now().await;
            }
            (tally, tells, asks)
        }
    });
    // Meanwhile each activation moves to node-2 and back, twice.
    let movers = keys.iter().map(|key| {
        let (one, two) = (h.node(0).clone(), h.node(1).clone());
        let tally = one.actor_for::<Tally>(key.clone());
        async move {
            tally.send(Get).await.expect("activate");
            let mut current = tally;
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let there = one.migrate(&current, "node-2").await.expect("move to node-2");
                tokio::time::sleep(Duration::from_millis(5)).await;
                current = two.migrate(&there, "node-1").await.expect("move back");
            }
        }
    });
    let stop = moving.clone();
    let (sent, ()) = futures_util::join!(join_all(senders), async move {
        join_all(movers).await;
        stop.store(false, Ordering::Relaxed);
    });
    for (key, (tally, tells, asks)) in keys.iter().zip(sent) {
        // Through the sender's handle, so it follows the sender's last tells.
        let (_, _, total, handled) = tally.send(Get).await.expect("ask at the end");
        // The mover's first ask, the sender's asks, this one.
        assert_eq!((total, handled), (tells, tells + asks + 2), "{key}: every message handled once");
    }
    h.shutdown().await;
}
