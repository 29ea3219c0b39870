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
