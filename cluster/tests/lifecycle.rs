//! A node's lifecycle: nothing it spawned outlives `shutdown()` or `kill()`, actors that
//! stop leave its table, and calls after shutdown say so.

use std::time::Duration;

use actix_cluster::prelude::*;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Halt;

#[distributed_actor(messages(Add, Halt))]
#[derive(Default, Serialize, Deserialize)]
struct Worker {
    total: u64,
}

impl Handler<Add> for Worker {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.total += msg.0;
        self.total
    }
}

impl Handler<Halt> for Worker {
    type Result = ();
    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

const DEADLINE: Duration = Duration::from_secs(20);

fn config(name: &str, seeds: &[String]) -> ClusterConfig {
    ClusterConfig::new()
        .node_name(name)
        .bind("127.0.0.1:0")
        .seed_nodes(seeds.iter().cloned())
        .probe_interval(Duration::from_millis(100))
        .heartbeat(Duration::from_millis(100), Duration::from_millis(500))
        .build()
        .expect("config")
}

async fn pair() -> (ClusterSystem, ClusterSystem) {
    let a = ClusterSystem::new("life", config("node-a", &[])).start().await.expect("start a");
    let b = ClusterSystem::new("life", config("node-b", &[a.local_addr().to_string()])).start().await.expect("start b");
    b.wait_for_peers(&["node-a"], DEADLINE).await.expect("linked");
    a.wait_for_peers(&["node-b"], DEADLINE).await.expect("linked");
    (a, b)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn after_shutdown_or_kill_every_task_has_ended_and_the_node_is_dropped() {
    for kill in [false, true] {
        let (a, b) = pair().await;
        // Traffic in every part of the node: links, a remote actor with asks and tells,
        // a local actor, membership with a subscriber and its timers.
        let remote = b.remote_actor::<Worker>("node-a").await.expect("spawn on a");
        assert_eq!(remote.send(Add(2)).await.expect("ask"), 2);
        remote.do_send(Add(1)).expect("tell");
        let local = b.spawn_local(Worker::default());
        assert_eq!(local.send(Add(5)).await.expect("local ask"), 5);
        wait_until("membership converged", || b.membership().up_members().len() == 2).await;
        // The services' metrics hook reaches the membership service on the control task.
        let gauges = b.service_gauges().await;
        let up = gauges.iter().find(|(name, _, _)| name.contains("status=\"Up\"")).map(|g| g.2);
        assert_eq!(up, Some(2.0), "{gauges:?}");
        let weak = b.downgrade();
        if kill {
            b.kill();
            tokio::time::timeout(DEADLINE, b.wait_stopped()).await.expect("every task of the killed node ended");
        } else {
            tokio::time::timeout(DEADLINE, b.shutdown()).await.expect("shutdown returns");
        }
        drop((remote, local, b));
        assert!(
            weak.upgrade().is_none(),
            "nothing of the node is left after {}",
            if kill { "kill" } else { "shutdown" }
        );
        wait_until("the survivor sees the link drop", || a.peers().is_empty()).await;
        a.shutdown().await;
    }
}

#[actix_rt::test]
async fn calls_after_shutdown_fail_with_shutdown_at_once() {
    let (a, b) = pair().await;
    let remote = b.remote_actor::<Worker>("node-a").await.expect("spawn on a");
    b.shutdown().await;
    let started = tokio::time::Instant::now();
    assert!(matches!(b.wait_for_peers(&["node-a"], DEADLINE).await, Err(ClusterError::Shutdown)));
    assert!(matches!(remote.send(Add(1)).await, Err(ClusterError::Shutdown)));
    assert!(matches!(remote.do_send(Add(1)).map_err(|e| e.error), Err(ClusterError::Shutdown)));
    assert!(matches!(b.remote_actor::<Worker>("node-a").await, Err(ClusterError::Shutdown)));
    assert!(started.elapsed() < Duration::from_secs(1), "none of them waited for a deadline");
    a.shutdown().await;
}

#[actix_rt::test]
async fn ten_thousand_remote_actors_spawned_and_stopped_leave_the_table_as_it_was() {
    let (a, b) = pair().await;
    let before = a.local_actor_count();
    let mut actors = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        actors.push(b.remote_actor::<Worker>("node-a").await.expect("spawn on a"));
    }
    assert_eq!(a.local_actor_count(), before + 10_000);
    for actor in &actors {
        actor.tell(Halt).await.expect("halt");
    }
    wait_until("every stopped actor left the table", || a.local_actor_count() == before).await;
    // A stopped actor's id answers ActorNotFound, naming it.
    let gone = &actors[42];
    let id = gone.actor_id().expect("remote id");
    match gone.send(Add(1)).await {
        Err(ClusterError::ActorNotFound { actor, node }) => assert_eq!((actor, node.as_str()), (id, "node-a")),
        other => panic!("expected ActorNotFound, got {other:?}"),
    }
    b.shutdown().await;
    a.shutdown().await;
}
