//! Two- and three-node clusters in one process, on ephemeral loopback ports.

use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::ConfigError;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Get;

#[cluster_message(result = "String", name = "tests.Greet")]
#[derive(Serialize, Deserialize)]
struct Greet {
    name: String,
}

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct SlowGet {
    millis: u64,
}

/// A message whose decoding validates its value: 13 is refused on the receiving node.
#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
#[serde(try_from = "u64")]
struct Picky(u64);

impl TryFrom<u64> for Picky {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        if v == 13 {
            Err("13 is not accepted".into())
        } else {
            Ok(Picky(v))
        }
    }
}

#[distributed_actor(messages(Add, Get, SlowGet, Picky))]
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
}

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.total += msg.0;
        self.total
    }
}

impl Handler<Picky> for Counter {
    type Result = u64;
    fn handle(&mut self, msg: Picky, _: &mut Context<Self>) -> u64 {
        msg.0
    }
}

impl Handler<Get> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
        self.total
    }
}

impl Handler<SlowGet> for Counter {
    type Result = ResponseActFuture<Self, u64>;
    fn handle(&mut self, msg: SlowGet, _: &mut Context<Self>) -> Self::Result {
        Box::pin(
            actix_cluster::rt::time::sleep(Duration::from_millis(msg.millis))
                .into_actor(self)
                .map(|(), act, _| act.total),
        )
    }
}

#[distributed_actor(messages(Greet), format = "json", name = "tests.Greeter")]
#[derive(Serialize, Deserialize)]
struct Greeter {
    greeting: String,
}

impl Handler<Greet> for Greeter {
    type Result = String;
    fn handle(&mut self, msg: Greet, _: &mut Context<Self>) -> String {
        format!("{}, {}!", self.greeting, msg.name)
    }
}

const DEADLINE: Duration = Duration::from_secs(10);

fn config(name: &str, seeds: &[String]) -> ClusterConfig {
    ClusterConfig::new()
        .node_name(name)
        .bind("127.0.0.1:0")
        .seed_nodes(seeds.iter().cloned())
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("valid config")
}

/// Starts `n` nodes named node-1..node-n; every node lists every earlier node as a seed,
/// and all are linked to each other when this returns.
async fn cluster(n: usize) -> Vec<ClusterSystem> {
    let mut nodes: Vec<ClusterSystem> = Vec::new();
    for i in 1..=n {
        let seeds: Vec<String> = nodes.iter().map(|s| s.local_addr().to_string()).collect();
        let system = ClusterSystem::new("test", config(&format!("node-{i}"), &seeds)).start().await.expect("start");
        nodes.push(system);
    }
    for node in &nodes {
        let others: Vec<String> =
            nodes.iter().filter(|o| o.node_name() != node.node_name()).map(|o| o.node_name().to_owned()).collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        node.wait_for_peers(&others, DEADLINE).await.expect("cluster links up");
    }
    nodes
}

async fn shutdown(nodes: Vec<ClusterSystem>) {
    for n in nodes {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn remote_spawn_tell_and_ask_between_two_nodes() {
    let nodes = cluster(2).await;
    let counter = nodes[0].remote_actor::<Counter>("node-2").await.expect("remote spawn");
    assert!(!counter.is_local());
    assert_eq!(counter.node_name(), Some("node-2"));
    assert_eq!(nodes[1].local_actor_count(), 1, "the actor lives on node-2");

    for i in 1..=100 {
        counter.do_send(Add(i)).expect("tell");
    }
    // Asks after tells on one link are processed after them: the total is complete.
    assert_eq!(counter.send(Get).await.expect("ask"), 5050);
    assert_eq!(counter.send(Add(1)).await.expect("ask"), 5051);
    counter.tell(Add(1)).await.expect("awaited tell");
    assert_eq!(counter.send_timeout(Get, Duration::from_secs(1)).await.expect("ask"), 5052);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn remote_spawn_with_state_and_json_format() {
    let nodes = cluster(2).await;
    let greeter = nodes[1]
        .remote_actor_with("node-1", Greeter { greeting: "Hello".into() })
        .await
        .expect("remote spawn with state");
    assert_eq!(greeter.send(Greet { name: "Ada".into() }).await.expect("ask"), "Hello, Ada!");
    let counter = nodes[1].remote_actor_with("node-1", Counter { total: 40 }).await.expect("spawn");
    assert_eq!(counter.send(Add(2)).await.expect("ask"), 42);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn local_and_remote_handles_share_one_api() {
    let nodes = cluster(2).await;
    let local = Counter::default().start_distributed_on(&nodes[0]);
    let remote = nodes[0].remote_actor::<Counter>("node-2").await.expect("spawn");
    for handle in [&local, &remote] {
        handle.do_send(Add(2)).expect("tell");
        handle.tell(Add(3)).await.expect("tell");
        assert_eq!(handle.send(Get).await.expect("ask"), 5);
        assert_eq!(handle.send_timeout(Add(1), Duration::from_secs(1)).await.expect("ask"), 6);
    }
    assert!(local.is_local() && !remote.is_local());
    // Remote spawn on the node itself starts a local actor.
    let own = nodes[0].remote_actor::<Counter>("node-1").await.expect("spawn on self");
    assert!(own.is_local());
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn three_nodes_spawn_and_message_each_other() {
    let nodes = cluster(3).await;
    for (i, from) in nodes.iter().enumerate() {
        for to in 1..=3 {
            let target = format!("node-{to}");
            let c = from.remote_actor_with(&target, Counter { total: i as u64 * 100 }).await.expect("spawn");
            assert_eq!(c.send(Add(to)).await.expect("ask"), i as u64 * 100 + to, "{} -> {target}", from.node_name());
        }
    }
    for n in &nodes {
        assert_eq!(n.peers().len(), 2, "{} links to both others", n.node_name());
        assert_eq!(n.local_actor_count(), 3);
    }
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn distinct_errors_for_unknown_node_timeout_and_link_down() {
    let mut nodes = cluster(2).await;
    let err = nodes[0].remote_actor::<Counter>("node-9").await.expect_err("no such node");
    assert!(matches!(err, ClusterError::UnknownNode(ref n) if n == "node-9"), "{err}");

    let counter = nodes[0].remote_actor::<Counter>("node-2").await.expect("spawn");
    let err = counter.send_timeout(SlowGet { millis: 2_000 }, Duration::from_millis(100)).await.expect_err("slow");
    assert!(matches!(err, ClusterError::Timeout(_)), "{err}");

    // The receiving node cannot decode the payload: a Decode error, and the link stays up.
    let err = counter.send(Picky(13)).await.expect_err("refused by the receiver's decoder");
    assert!(matches!(err, ClusterError::Decode { ref detail, .. } if detail.contains("Picky")), "{err}");
    assert_eq!(counter.send(Picky(12)).await.expect("valid payload"), 12);

    // A pending ask fails with LinkDown when the peer leaves, long before its timeout.
    let pending = {
        let counter = counter.clone();
        actix_cluster::rt::spawn(async move { counter.send_timeout(SlowGet { millis: 30_000 }, DEADLINE).await })
    };
    actix_cluster::rt::task::yield_now().await;
    let started = Instant::now();
    let node2 = nodes.pop().expect("node-2");
    node2.shutdown().await;
    let err = pending.await.expect("task").expect_err("peer left");
    assert!(matches!(err, ClusterError::LinkDown { ref node } if node == "node-2"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast: {:?}", started.elapsed());
    let err = counter.do_send(Add(1)).expect_err("no link").error;
    assert!(matches!(err, ClusterError::LinkDown { .. }), "{err}");
    let err = counter.send(Get).await.expect_err("no link");
    assert!(matches!(err, ClusterError::LinkDown { .. }), "{err}");
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_restarted_peer_is_relinked_with_a_new_incarnation() {
    let nodes = cluster(2).await;
    let old_id = nodes[1].node_id();
    let addr = nodes[1].local_addr();
    let counter = nodes[0].remote_actor::<Counter>("node-2").await.expect("spawn");
    let mut nodes = nodes;
    nodes.pop().expect("node-2").shutdown().await;

    // Same name, address and seeds as before; a new incarnation (node id).
    let cfg = ClusterConfig::new()
        .node_name("node-2")
        .bind(addr.to_string())
        .seed_nodes([nodes[0].local_addr().to_string()])
        .build()
        .expect("config");
    let restarted = ClusterSystem::new("test", cfg).start().await.expect("restart on the same port");
    nodes[0].wait_for_peers(&["node-2"], DEADLINE).await.expect("relinked");
    let peer = nodes[0].peer("node-2").expect("peer");
    assert_ne!(peer.id, old_id);
    assert_eq!(peer.id, restarted.node_id());
    // The old handle points at the old incarnation, whose actors are gone: it says so,
    // rather than a transient LinkDown.
    assert!(matches!(counter.send(Get).await, Err(ClusterError::NodeRestarted { ref node }) if node == "node-2"));
    let fresh = nodes[0].remote_actor::<Counter>("node-2").await.expect("spawn on the new incarnation");
    assert_eq!(fresh.send(Add(7)).await.expect("ask"), 7);
    restarted.shutdown().await;
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn simultaneous_connects_leave_exactly_one_link() {
    // Both nodes list each other as seeds, so each connects to the other at once.
    let a = ClusterSystem::new("test", config("node-a", &[])).start().await.expect("start");
    let b_cfg = config("node-b", &[a.local_addr().to_string()]);
    let b = ClusterSystem::new("test", b_cfg).start().await.expect("start");
    let c_cfg = config("node-c", &[a.local_addr().to_string(), b.local_addr().to_string()]);
    let c = ClusterSystem::new("test", c_cfg).start().await.expect("start");
    for (n, others) in [(&a, ["node-b", "node-c"]), (&b, ["node-a", "node-c"]), (&c, ["node-a", "node-b"])] {
        n.wait_for_peers(&others, DEADLINE).await.expect("linked");
    }
    for n in [&a, &b, &c] {
        assert_eq!(n.peers().len(), 2);
        let counter = n.remote_actor::<Counter>(if n.node_name() == "node-a" { "node-b" } else { "node-a" }).await;
        assert_eq!(counter.expect("spawn").send(Add(1)).await.expect("ask"), 1);
    }
    for n in [a, b, c] {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn nodes_of_different_clusters_do_not_link() {
    let a = ClusterSystem::new("blue", config("node-1", &[])).start().await.expect("start");
    let b = ClusterSystem::new("green", config("node-2", &[a.local_addr().to_string()])).start().await.expect("start");
    let err = b.wait_for_peers(&["node-1"], Duration::from_millis(500)).await.expect_err("different clusters");
    assert!(matches!(err, ClusterError::Timeout(_)));
    assert!(a.peers().is_empty() && b.peers().is_empty());
    a.shutdown().await;
    b.shutdown().await;
}

#[actix_rt::test]
async fn start_fails_clearly_on_a_taken_port_and_bad_names() {
    let a = ClusterSystem::new("test", config("node-1", &[])).start().await.expect("start");
    let taken = ClusterConfig::new().node_name("node-2").bind(a.local_addr().to_string()).build().expect("cfg");
    let err = ClusterSystem::new("test", taken).start().await.expect_err("port in use");
    assert!(matches!(err, StartError::Bind { .. }), "{err}");
    let err = ClusterSystem::new("bad name", config("node-3", &[])).start().await.expect_err("bad cluster name");
    assert!(matches!(err, StartError::Config(ConfigError::InvalidClusterName(_))), "{err}");
    a.shutdown().await;
}

/// A guaranteed tell is confirmed by a probe after it only when its handler's result is
/// ready when the handler returns; a handler that answers with a future is asked instead.
#[test]
fn only_handlers_that_answer_on_return_are_confirmed_by_a_probe() {
    assert!(actix_cluster::__private::handled_in_order::<Counter, Add>());
    assert!(actix_cluster::__private::handled_in_order::<Greeter, Greet>());
    assert!(!actix_cluster::__private::handled_in_order::<Counter, SlowGet>());
}
