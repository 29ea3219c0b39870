//! Placement strategies on a live in-process cluster: where `system.spawn` puts new actors.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::{Candidate, PlacementError, PlacementPolicy};

/// A user policy: the member named by the spawn's key, if it is up.
struct ByKey;

impl PlacementPolicy for ByKey {
    fn choose(&self, members: &[Candidate], key: Option<&str>) -> Option<String> {
        let key = key?;
        members.iter().find(|m| m.name == key).map(|m| m.name.clone())
    }
}

#[cluster_message(result = "String")]
#[derive(Serialize, Deserialize)]
struct Where;

#[distributed_actor(messages(Where))]
#[derive(Default, Serialize, Deserialize)]
struct Worker;

impl Handler<Where> for Worker {
    type Result = String;
    fn handle(&mut self, _: Where, _: &mut Context<Self>) -> String {
        String::new()
    }
}

#[distributed_actor(messages(), placement = "round_robin")]
#[derive(Default, Serialize, Deserialize)]
struct Spread;

/// Keeps the numbers it is told, in order.
#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Push(u32);

#[cluster_message(result = "Vec<u32>")]
#[derive(Serialize, Deserialize)]
struct Seen;

#[distributed_actor(messages(Push, Seen), placement = "role:gpu")]
#[derive(Default, Serialize, Deserialize)]
struct OnGpu {
    seen: Vec<u32>,
}

impl actix::Handler<Push> for OnGpu {
    type Result = ();
    fn handle(&mut self, Push(n): Push, _: &mut Context<Self>) {
        self.seen.push(n);
    }
}

impl actix::Handler<Seen> for OnGpu {
    type Result = actix::MessageResult<Seen>;
    fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(self.seen.clone())
    }
}

#[distributed_actor(messages(Push), placement = "role:tpu")]
#[derive(Default, Serialize, Deserialize)]
struct OnTpu;

impl actix::Handler<Push> for OnTpu {
    type Result = ();
    fn handle(&mut self, _: Push, _: &mut Context<Self>) {}
}

const DEADLINE: Duration = Duration::from_secs(20);

async fn cluster(roles: [&[&str]; 3]) -> Vec<ClusterSystem> {
    let mut nodes: Vec<ClusterSystem> = Vec::new();
    for (i, roles) in roles.iter().enumerate() {
        let mut config = ClusterConfig::new()
            .node_name(format!("node-{}", i + 1))
            .bind("127.0.0.1:0")
            .seed_nodes(nodes.iter().map(|n| n.local_addr().to_string()))
            .probe_interval(Duration::from_millis(100))
            .resource_interval(Some(Duration::from_millis(100)))
            .rng_seed(i as u64 + 1)
            .placement_policy("by-key", std::sync::Arc::new(ByKey));
        for r in *roles {
            config = config.role(*r);
        }
        nodes.push(ClusterSystem::new("place", config.build().expect("config")).start().await.expect("start"));
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !nodes.iter().all(|n| n.membership().up_members().len() == 3 && n.peers().len() == 2) {
        assert!(tokio::time::Instant::now() < deadline, "cluster did not form");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nodes
}

fn tally<A: DistributedActor>(refs: &[ActorRef<A>]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for r in refs {
        *t.entry(r.node_name().expect("placed").to_owned()).or_default() += 1;
    }
    t
}

async fn shutdown(nodes: Vec<ClusterSystem>) {
    for n in nodes {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn each_strategy_places_where_it_says() {
    let nodes = cluster([&[], &[], &["gpu"]]).await;
    let n1 = &nodes[0];
    let mut spread = Vec::new();
    for _ in 0..30 {
        spread.push(n1.spawn(Worker).placement(Placement::RoundRobin).await.expect("round robin"));
    }
    assert_eq!(tally(&spread), BTreeMap::from([("node-1".into(), 10), ("node-2".into(), 10), ("node-3".into(), 10)]));
    for actor in &spread {
        actor.send(Where).await.expect("every placed actor answers");
    }
    let gpu: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(n1.spawn(Worker).placement(Placement::Role("gpu".into())).await.expect("role"));
        }
        v
    };
    assert_eq!(tally(&gpu), BTreeMap::from([("node-3".into(), 5)]));
    let pinned = n1.spawn(Worker).placement(Placement::Node("node-2".into())).await.expect("node");
    assert_eq!(pinned.node_name(), Some("node-2"));
    // The same key lands on the same node whichever node spawns it.
    let from_1 = n1.spawn(Worker).placement(Placement::ConsistentHash).key("cart-42").await.expect("hash");
    let from_2 = nodes[1].spawn(Worker).placement(Placement::ConsistentHash).key("cart-42").await.expect("hash");
    assert_eq!(from_1.node_name(), from_2.node_name());
    let err = n1.spawn(Worker).placement(Placement::ConsistentHash).await.expect_err("no key");
    assert!(matches!(err, ClusterError::Placement(PlacementError::NeedsKey)), "{err}");
    let err = n1.spawn(Worker).placement(Placement::Role("tpu".into())).await.expect_err("no such role");
    assert!(matches!(err, ClusterError::Placement(PlacementError::NoRole(_))), "{err}");
    // A user-defined policy, registered in the configuration.
    let custom = n1.spawn(Worker).placement(Placement::Custom("by-key".into())).key("node-3").await.expect("custom");
    assert_eq!(custom.node_name(), Some("node-3"));
    let err = n1.spawn(Worker).placement(Placement::Custom("by-key".into())).key("node-9").await.expect_err("declined");
    assert!(matches!(err, ClusterError::Placement(PlacementError::PolicyDeclined(_))), "{err}");
    let err = n1.spawn(Worker).placement(Placement::Custom("nearest".into())).await.expect_err("unknown");
    assert!(matches!(err, ClusterError::Placement(PlacementError::UnknownPolicy(_))), "{err}");
    // The type's own placement, from its attribute.
    let mut typed = Vec::new();
    for _ in 0..6 {
        typed.push(n1.spawn(Spread).await.expect("typed"));
    }
    assert_eq!(tally(&typed).len(), 3, "round robin by the type's attribute: {:?}", tally(&typed));
    assert_eq!(n1.spawn(Worker).await.expect("default").node_name(), Some("node-1"), "local by default");
    drop((spread, gpu, pinned, from_1, from_2, typed, custom));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn least_loaded_sends_new_actors_to_the_idle_nodes() {
    let nodes = cluster([&[], &[], &[]]).await;
    let n1 = &nodes[0];
    // node-1 is busy: 300 actors of its own.
    let busy: Vec<_> = (0..300).map(|_| n1.spawn_local(Worker)).collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while n1.membership().member("node-1").and_then(|m| m.resources).is_none_or(|r| r.actor_count < 300)
        || n1.membership().members().iter().any(|m| m.resources.is_none())
    {
        assert!(tokio::time::Instant::now() < deadline, "resource reports did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut placed = Vec::new();
    for _ in 0..60 {
        placed.push(n1.spawn(Worker).placement(Placement::LeastLoaded).await.expect("least loaded"));
    }
    let table = tally(&placed);
    println!("least loaded, node-1 holding 300 actors, 60 new actors: {table:?}");
    // node-1 is chosen only when both draws land on it (1 in 9).
    let on_busy = table.get("node-1").copied().unwrap_or(0);
    assert!(on_busy <= 15, "the busy node got {on_busy} of 60: {table:?}");
    assert!(table.contains_key("node-2") && table.contains_key("node-3"), "both idle nodes get actors: {table:?}");
    drop((busy, placed));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn in_the_centralized_architecture_the_master_decides_for_every_worker() {
    let mut nodes: Vec<ClusterSystem> = Vec::new();
    for name in ["m", "w1", "w2", "w3"] {
        let config = ClusterConfig::new()
            .node_name(name)
            .bind("127.0.0.1:0")
            .architecture(Architecture::Centralized)
            .master_nodes(["m"])
            .seed_nodes(nodes.first().map(|m| m.local_addr().to_string()))
            .probe_interval(Duration::from_millis(100))
            .request_timeout(Duration::from_secs(2))
            .build()
            .expect("config");
        nodes.push(ClusterSystem::new("central", config).start().await.expect("start"));
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !nodes.iter().all(|n| n.membership().up_members().len() == 4 && n.peers().len() == 3) {
        assert!(tokio::time::Instant::now() < deadline, "cluster did not form");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Twelve spawns from two workers: one round robin, the master's, over all four members.
    // (Each worker deciding for itself would put 4, 4, 2, 2.)
    let mut placed = Vec::new();
    for i in 0..12 {
        let from = &nodes[1 + i % 2];
        placed.push(from.spawn(Worker).placement(Placement::RoundRobin).await.expect("placed by the master"));
    }
    let expected: BTreeMap<String, usize> = ["m", "w1", "w2", "w3"].iter().map(|n| ((*n).to_owned(), 3)).collect();
    assert_eq!(tally(&placed), expected);
    // Without a master, workers decide themselves.
    let master = nodes.remove(0);
    master.shutdown().await;
    let w1 = &nodes[0];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while w1.peer("m").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the master's link stayed up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alone = w1.spawn(Worker).placement(Placement::Role("none".into())).await.expect_err("no such role here");
    assert!(matches!(alone, ClusterError::Placement(PlacementError::NoRole(_))), "decided by the worker: {alone}");
    let on_its_own = w1.spawn(Worker).placement(Placement::RoundRobin).await.expect("decided by the worker");
    assert!(on_its_own.node_name().is_some());
    drop((placed, on_its_own));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn start_distributed_places_by_the_type_and_delivers_what_was_sent_while_it_started() {
    let nodes = cluster([&[], &[], &["gpu"]]).await;
    let n1 = &nodes[0];
    // Placed by its type's attribute on the only `gpu` node; the handle comes back at once.
    let actor = OnGpu::default().start_distributed_on(n1);
    assert!(actor.is_starting(), "placed on another node: started in the background");
    for n in 0..200 {
        actor.do_send(Push(n)).expect("tells wait while the actor starts");
    }
    let seen = actor.send(Seen).await.expect("the ask waits for the start");
    assert_eq!(seen, (0..200).collect::<Vec<_>>(), "tells sent while starting arrive, in order, before the ask");
    assert!(!actor.is_starting());
    assert_eq!(actor.node_name(), Some("node-3"));
    assert!(actor.identity().is_some() && !actor.is_local());
    // Once started, the handle is an ordinary one: it crosses the network and tells go straight out.
    actor.do_send(Push(200)).expect("tell");
    let seen = actor.send(Seen).await.expect("ask");
    assert_eq!(seen.len(), 201);
    let again = nodes[1].actor_ref_at::<OnGpu>(actor.identity().expect("started"), actor.location().expect("started"));
    assert_eq!(again.send(Seen).await.expect("from node-2").len(), 201);

    // No node has the role: every call through the handle says why.
    let nowhere = OnTpu.start_distributed_on(n1);
    let _ = nowhere.do_send(Push(1));
    let err = nowhere.started_handle().await.expect_err("no tpu node");
    let ClusterError::NotStarted { actor, cause } = &err else { panic!("{err}") };
    assert_eq!(actor, OnTpu::NAME);
    assert!(matches!(**cause, ClusterError::Placement(PlacementError::NoRole(_))), "{cause}");
    assert!(matches!(nowhere.tell(Push(2)).await, Err(ClusterError::NotStarted { .. })));
    let back = nowhere.do_send(Push(3)).expect_err("failed start");
    assert!(matches!(back.error, ClusterError::NotStarted { .. }) && back.message.0 == 3);
    assert_eq!(nowhere.node_name(), None);
    assert_eq!(nodes[2].local_actor_count(), 1, "only the gpu actor runs on node-3");
    shutdown(nodes).await;
}
