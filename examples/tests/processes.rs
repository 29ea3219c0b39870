//! Nodes as separate OS processes: remote spawn, tell and ask across processes, and a node
//! killed with SIGKILL while asks to it are pending.

use std::path::Path;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::testkit::process::NodeProcess;
use actix_cluster_examples::node::{self, NodeArgs};
use actix_cluster_examples::{Add, Counter, Get, Greet, Greeter, SlowGet};

const DEADLINE: Duration = Duration::from_secs(20);

/// An actor type only this test binary has: the `cluster-node` processes do not.
#[distributed_actor(messages())]
#[derive(Default, Serialize, Deserialize)]
struct OnlyInTests;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cluster-node"))
}

async fn parent(cluster: &str) -> ClusterSystem {
    let config = ClusterConfig::new().node_name("node-1").bind("127.0.0.1:0").build().expect("config");
    ClusterSystem::new(cluster, config).start().await.expect("start node-1")
}

async fn child(cluster: &str, name: &str, seeds: &[String]) -> NodeProcess {
    let args = NodeArgs::new(cluster, name, seeds);
    node::spawn_node(exe(), &[], &args, DEADLINE, false).await.expect("child node ready")
}

#[actix_rt::test]
async fn three_processes_spawn_tell_and_ask() {
    let node1 = parent("procs").await;
    let seed = vec![node1.local_addr().to_string()];
    let node2 = child("procs", "node-2", &seed).await;
    let node3 = child("procs", "node-3", &[seed[0].clone(), node2.addr.to_string()]).await;
    node1.wait_for_peers(&["node-2", "node-3"], DEADLINE).await.expect("linked to both children");
    assert_ne!(node2.pid(), node3.pid());

    let counter = node1.remote_actor::<Counter>("node-2").await.expect("spawn in process node-2");
    for i in 1..=1000 {
        counter.do_send(Add(i)).expect("tell");
    }
    assert_eq!(counter.send(Get).await.expect("ask"), 500_500);

    let greeter =
        node1.remote_actor_with("node-3", Greeter { greeting: "Hello".into() }).await.expect("spawn in process node-3");
    assert_eq!(greeter.send(Greet { name: "Ada".into() }).await.expect("ask"), "Hello, Ada! (from node-3)");

    let err = node1.remote_actor::<OnlyInTests>("node-2").await.expect_err("not built into cluster-node");
    assert!(
        matches!(err, ClusterError::ActorTypeNotRegistered { ref node, .. } if node == "node-2"),
        "expected ActorTypeNotRegistered, got {err}"
    );
    assert_eq!(counter.send(Get).await.expect("the link survives the refusal"), 500_500);

    node2.stop(DEADLINE).await.expect("node-2 stops gracefully");
    node3.stop(DEADLINE).await.expect("node-3 stops gracefully");
    node1.shutdown().await;
}

#[actix_rt::test]
async fn sigkill_fails_pending_asks_with_link_down_instead_of_hanging() {
    let node1 = parent("kill").await;
    let seed = vec![node1.local_addr().to_string()];
    let mut victim = child("kill", "node-2", &seed).await;
    let survivor = child("kill", "node-3", &seed).await;
    node1.wait_for_peers(&["node-2", "node-3"], DEADLINE).await.expect("linked");

    let doomed = node1.remote_actor::<Counter>("node-2").await.expect("spawn on node-2");
    let alive = node1.remote_actor::<Counter>("node-3").await.expect("spawn on node-3");
    assert_eq!(doomed.send(Add(1)).await.expect("ask before the kill"), 1);

    // Asks that would take 60 s each, with a 60 s timeout: only the link failure can end them.
    let mut pending = Vec::new();
    for _ in 0..10 {
        let d = doomed.clone();
        pending.push(actix_cluster::rt::spawn(async move {
            d.send_timeout(SlowGet { millis: 60_000 }, Duration::from_secs(60)).await
        }));
    }
    // Make sure the asks are on the wire: a later ask on the same link has been answered.
    assert_eq!(doomed.send(Get).await.expect("ask"), 1);

    let killed_at = Instant::now();
    victim.kill().await;
    for p in pending {
        let err = p.await.expect("task").expect_err("the node is dead");
        assert!(
            matches!(err, ClusterError::LinkDown { ref node } if node == "node-2"),
            "expected LinkDown for node-2, got {err}"
        );
    }
    let detected = killed_at.elapsed();
    assert!(detected < Duration::from_secs(5), "pending asks failed after {detected:?}");
    println!("pending asks failed {detected:?} after SIGKILL");

    assert!(matches!(doomed.send(Get).await, Err(ClusterError::LinkDown { .. })));
    assert!(matches!(doomed.do_send(Add(1)).map_err(|e| e.error), Err(ClusterError::LinkDown { .. })));
    assert!(matches!(node1.remote_actor::<Counter>("node-2").await, Err(ClusterError::UnknownNode(_))));
    // The other node is unaffected.
    assert_eq!(alive.send(Add(5)).await.expect("node-3 still serves"), 5);
    survivor.stop(DEADLINE).await.expect("node-3 stops");
    node1.shutdown().await;
}

#[actix_rt::test]
async fn a_paused_process_stops_answering_and_resumes() {
    let node1 = parent("pause").await;
    let seed = vec![node1.local_addr().to_string()];
    let frozen = child("pause", "node-2", &seed).await;
    node1.wait_for_peers(&["node-2"], DEADLINE).await.expect("linked");
    let counter = node1.remote_actor::<Counter>("node-2").await.expect("spawn");
    assert_eq!(counter.send(Add(1)).await.expect("ask"), 1);

    frozen.pause().expect("SIGSTOP");
    let err = counter.send_timeout(Add(1), Duration::from_millis(300)).await.expect_err("a stopped process");
    assert!(matches!(err, ClusterError::Timeout(_)), "{err}");
    frozen.resume().expect("SIGCONT");
    // The ask that timed out was still delivered once the process resumed; the link
    // survived a pause shorter than its idle timeout.
    assert_eq!(counter.send(Add(1)).await.expect("answers again"), 3);
    assert!(frozen.log().iter().any(|l| l.starts_with("READY node-2 ")), "{:?}", frozen.log());
    frozen.stop(DEADLINE).await.expect("stops");
    node1.shutdown().await;
}

#[actix_rt::test]
async fn a_name_hosted_by_a_killed_process_disappears_from_the_registry() {
    let node1 = parent("names").await;
    let seed = vec![node1.local_addr().to_string()];
    let _node2 = child("names", "node-2", &seed).await;
    let mut node3 = child("names", "node-3", &seed).await;
    let deadline = Instant::now() + DEADLINE;
    while node1.membership().up_members().len() < 3 || node1.peers().len() < 2 {
        assert!(Instant::now() < deadline, "the three processes did not form a cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // node-3's process writes the record; node-1 (another process) resolves and uses it.
    let counter = node1
        .spawn(Counter::default())
        .placement(Placement::Node("node-3".into()))
        .name("orders")
        .await
        .expect("named spawn on node-3");
    let found = node1.registry().lookup::<Counter>("orders").await.expect("lookup").expect("resolves");
    assert_eq!(found.identity(), counter.identity());
    assert_eq!(found.send(Add(2)).await.expect("ask"), 2);
    let killed = Instant::now();
    node3.kill().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while node1.registry().lookup::<Counter>("orders").await.expect("lookup").is_some() {
        assert!(Instant::now() < deadline, "a SIGKILLed process's name still resolves");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("registry: the name of a SIGKILLed process was gone after {:?}", killed.elapsed());
    node1.shutdown().await;
}
