//! Membership and failure detection, decentralized (SWIM) and centralized (masters), on
//! real loopback links through the test harness and with node processes.
//!
//! The long runs that produce the figures are `#[ignore]`d; run them with
//! `cargo test --release -p actix-cluster-examples --test membership -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::testkit::faults::LinkConditions;
use actix_cluster::testkit::harness::ClusterTestHarness;
use actix_cluster::{ClusterConfig, StaticResolver};
use actix_cluster_examples::node::{self, NodeArgs};
use actix_cluster_examples::{Add, Counter};

const DEADLINE: Duration = Duration::from_secs(30);

/// (member name, event kind, node id) of every event received.
type Seen = Arc<Mutex<Vec<(String, &'static str, u128)>>>;

/// Records the membership events an actor receives.
#[derive(Default)]
struct Recorder {
    seen: Seen,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<MembershipEvent> for Recorder {
    type Result = ();
    fn handle(&mut self, e: MembershipEvent, _: &mut Context<Self>) {
        self.seen.lock().expect("events").push((e.member().name.clone(), e.kind(), e.member().id.0));
    }
}

fn subscribe(system: &ClusterSystem) -> Seen {
    let recorder = Recorder::default();
    let seen = recorder.seen.clone();
    system.membership().subscribe(recorder.start().recipient());
    seen
}

fn has(seen: &Seen, name: &str, kind: &str) -> bool {
    seen.lock().expect("events").iter().any(|(n, k, _)| n == name && *k == kind)
}

fn status_of(system: &ClusterSystem, name: &str) -> Option<MemberStatus> {
    system.membership().member(name).map(|m| m.status)
}

fn gone(system: &ClusterSystem, name: &str) -> bool {
    matches!(status_of(system, name), None | Some(MemberStatus::Down) | Some(MemberStatus::Removed))
}

#[actix_rt::test]
async fn ten_nodes_converge_on_one_view() {
    let started = Instant::now();
    let h = ClusterTestHarness::start(10).await.expect("10 nodes");
    let took = started.elapsed();
    let all: BTreeSet<String> = h.names().into_iter().collect();
    for i in 0..10 {
        assert_eq!(h.node(i).membership().up_members(), all, "{} sees everyone up", h.name(i));
    }
    println!("10 in-process nodes: every node sees 10 up after {took:?}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_killed_node_is_marked_down_by_every_other_node() {
    let mut h = ClusterTestHarness::start(4).await.expect("harness");
    let seen = subscribe(h.node(0));
    let killed = Instant::now();
    h.kill(3);
    h.run_until(DEADLINE, "everyone marks node-4 down", |h| (0..3).all(|i| gone(h.node(i), "node-4")))
        .await
        .expect("detected");
    println!("in-process kill detected by all 3 peers after {:?}", killed.elapsed());
    assert!(has(&seen, "node-4", "down"), "{:?}", seen.lock().expect("events"));
    h.wait_for_stability(DEADLINE).await.expect("the rest agree");
    h.shutdown().await;
}

#[actix_rt::test]
async fn the_seed_may_fail_once_everyone_has_joined() {
    // node-1 is a seed of every other node (the harness seeds each node with the earlier ones).
    let mut h = ClusterTestHarness::start(4).await.expect("harness");
    h.kill(0);
    h.run_until(DEADLINE, "the others declare node-1 down", |h| (1..4).all(|i| gone(h.node(i), "node-1")))
        .await
        .expect("detected");
    h.wait_for_stability(DEADLINE).await.expect("three nodes keep one view without their seed");
    let c = h.node(3).remote_actor::<Counter>("node-2").await.expect("messaging continues");
    assert_eq!(c.send(Add(2)).await.expect("ask"), 2);
    h.restart(0).await.expect("the seed returns");
    h.wait_for_stability(DEADLINE).await.expect("and rejoins");
    h.shutdown().await;
}

#[actix_rt::test]
async fn centralized_workers_learn_each_other_from_the_master() {
    let master = ClusterSystem::new(
        "central",
        ClusterConfig::new()
            .node_name("master")
            .bind("127.0.0.1:0")
            .architecture(Architecture::Centralized)
            .master_nodes(["master"])
            .probe_interval(Duration::from_millis(200))
            .build()
            .expect("config"),
    )
    .start()
    .await
    .expect("master");
    let mut workers = Vec::new();
    for i in 1..=3 {
        // Each worker knows only the master's address.
        let config = ClusterConfig::new()
            .node_name(format!("worker-{i}"))
            .bind("127.0.0.1:0")
            .architecture(Architecture::Centralized)
            .master_nodes(["master"])
            .seed_nodes([master.local_addr().to_string()])
            .probe_interval(Duration::from_millis(200))
            .build()
            .expect("config");
        workers.push(ClusterSystem::new("central", config).start().await.expect("worker"));
    }
    let all: BTreeSet<String> =
        ["master", "worker-1", "worker-2", "worker-3"].iter().map(|s| (*s).to_owned()).collect();
    let started = Instant::now();
    while !(workers.iter().all(|w| w.membership().up_members() == all && w.peers().len() == 3)
        && master.membership().up_members() == all)
    {
        assert!(started.elapsed() < DEADLINE, "workers did not learn each other from the master");
        actix_cluster::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let c = workers[0].remote_actor::<Counter>("worker-3").await.expect("worker to worker");
    assert_eq!(c.send(Add(1)).await.expect("ask"), 1);
    for w in workers {
        w.shutdown().await;
    }
    master.shutdown().await;
}

#[actix_rt::test]
async fn a_graceful_leave_is_reported_as_left_not_down() {
    let mut h = ClusterTestHarness::start(3).await.expect("harness");
    let seen = subscribe(h.node(0));
    h.stop(2).await;
    h.run_until(DEADLINE, "node-1 sees node-3 leave", |_| has(&seen, "node-3", "left")).await.expect("left");
    assert!(!has(&seen, "node-3", "down"), "a leave is not a failure: {:?}", seen.lock().expect("events"));
    h.wait_for_stability(DEADLINE).await.expect("two nodes agree");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_restarted_node_rejoins_and_its_old_incarnation_is_removed() {
    let mut h = ClusterTestHarness::start(3).await.expect("harness");
    let seen = subscribe(h.node(0));
    let old = h.node(2).node_id().0;
    let new = h.restart(2).await.expect("restart").node_id().0;
    h.wait_for_stability(DEADLINE).await.expect("rejoined");
    assert_eq!(h.node(0).membership().member("node-3").map(|m| m.id.0), Some(new));
    let events = seen.lock().expect("events").clone();
    assert!(events.contains(&("node-3".into(), "removed", old)), "{events:?}");
    assert!(events.contains(&("node-3".into(), "up", new)), "{events:?}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_partition_splits_the_views_and_healing_merges_them() {
    let h = ClusterTestHarness::start(5).await.expect("harness");
    h.partition(&[0, 1], &[2, 3, 4]);
    let minority: BTreeSet<String> = ["node-1", "node-2"].iter().map(|s| (*s).to_owned()).collect();
    let majority: BTreeSet<String> = ["node-3", "node-4", "node-5"].iter().map(|s| (*s).to_owned()).collect();
    h.run_until(DEADLINE, "each side sees only itself up", |h| {
        (0..2).all(|i| h.node(i).membership().up_members() == minority)
            && (2..5).all(|i| h.node(i).membership().up_members() == majority)
    })
    .await
    .expect("views split");
    let healed = Instant::now();
    h.heal();
    h.wait_for_stability(DEADLINE).await.expect("views merge");
    println!("partition 2|3 healed: one view of 5 after {:?}", healed.elapsed());
    h.shutdown().await;
}

#[actix_rt::test]
async fn profiles_and_resource_reports_are_visible_to_every_member() {
    let h = ClusterTestHarness::builder()
        .nodes(3)
        .configure(|i, c| if i == 2 { c.role("storage").capability("ssd").metadata("zone", "eu-1") } else { c })
        .start()
        .await
        .expect("harness");
    let m = h.node(0).membership().member("node-3").expect("node-3 known");
    assert_eq!(m.profile.roles, ["storage"]);
    assert_eq!(m.profile.capabilities, ["ssd"]);
    assert_eq!(m.profile.metadata.get("zone").map(String::as_str), Some("eu-1"));
    for _ in 0..3 {
        let _ = h.node(2).spawn_local(Counter::default());
    }
    h.run_until(DEADLINE, "node-1 sees node-3's actor count", |h| {
        h.node(0)
            .membership()
            .member("node-3")
            .and_then(|m| m.resources)
            .is_some_and(|r| r.actor_count >= 3 && r.memory_bytes > 0)
    })
    .await
    .expect("resource report");
    h.shutdown().await;
}

fn centralized(
    masters: &'static [&'static str],
) -> impl Fn(usize, actix_cluster::ClusterConfigBuilder) -> actix_cluster::ClusterConfigBuilder {
    move |_, c| c.architecture(Architecture::Centralized).master_nodes(masters.iter().copied())
}

#[actix_rt::test]
async fn centralized_workers_register_and_keep_working_while_the_master_is_down() {
    let mut h =
        ClusterTestHarness::builder().nodes(4).configure(centralized(&["node-1"])).start().await.expect("harness");
    let all: BTreeSet<String> = h.names().into_iter().collect();
    assert_eq!(h.node(0).membership().up_members(), all, "the master sees every worker");
    assert_eq!(h.node(3).membership().up_members(), all, "a worker sees the master's view");

    // A worker fails: the master's phi detector notices and the workers learn it.
    h.kill(3);
    h.run_until(DEADLINE, "master and workers mark node-4 down", |h| (0..3).all(|i| gone(h.node(i), "node-4")))
        .await
        .expect("worker failure detected");

    // The master fails: workers keep their view and talk to each other directly.
    h.kill(0);
    let counter = h.node(1).remote_actor::<Counter>("node-3").await.expect("worker to worker without master");
    assert_eq!(counter.send(Add(5)).await.expect("ask"), 5);
    assert_eq!(status_of(h.node(1), "node-3"), Some(MemberStatus::Up));

    // The master returns: workers register again, and it sees them all.
    h.restart(0).await.expect("master restarts");
    h.restart(3).await.expect("worker restarts");
    h.wait_for_stability(DEADLINE).await.expect("one view again");
    assert_eq!(h.node(0).membership().up_members(), all);
    h.shutdown().await;
}

#[actix_rt::test]
async fn dns_discovery_finds_every_node_behind_one_name() {
    let resolver = StaticResolver::default();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let config = ClusterConfig::new()
            .node_name(format!("node-{i}"))
            .bind("127.0.0.1:0")
            .discovery(DiscoveryMethod::Dns { name: "cluster.svc.local".into(), port: 7000 })
            .resolver(Arc::new(resolver.clone()))
            .probe_interval(Duration::from_millis(200))
            .build()
            .expect("config");
        nodes.push(ClusterSystem::new("dns", config).start().await.expect("start"));
    }
    // The "pods" are registered after they start, as a headless service would list them.
    resolver.set(nodes.iter().map(|n| n.local_addr()).collect());
    let all: BTreeSet<String> = (1..=3).map(|i| format!("node-{i}")).collect();
    let started = Instant::now();
    while !nodes.iter().all(|n| n.membership().up_members() == all) {
        assert!(
            started.elapsed() < DEADLINE,
            "not converged: {:?}",
            nodes.iter().map(|n| n.membership().up_members()).collect::<Vec<_>>()
        );
        actix_cluster::rt::time::sleep(Duration::from_millis(20)).await;
    }
    for n in nodes {
        n.shutdown().await;
    }
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cluster-node"))
}

/// Starts `n - 1` in-process nodes and kills a node process `trials` times; returns
/// (convergence time of the harness, detection times).
async fn sigkill_trials(n: usize, trials: usize, probe: Duration) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let h = ClusterTestHarness::builder()
        .nodes(n - 1)
        .cluster("kill")
        .configure(move |_, c| c.probe_interval(probe))
        .start()
        .await
        .expect("harness");
    let converged = started.elapsed();
    let seeds: Vec<String> = h.live().iter().map(|&i| h.node(i).local_addr().to_string()).collect();
    let mut detections = Vec::new();
    for trial in 0..trials {
        let name = format!("victim-{trial}");
        let mut args = NodeArgs::new("kill", &name, &seeds);
        args.probe_ms = probe.as_millis() as u64;
        let mut victim = node::spawn_node(exe(), &[], &args, DEADLINE, false).await.expect("victim process");
        h.run_until(DEADLINE, "everyone sees the victim up", |h| {
            h.live().iter().all(|&i| status_of(h.node(i), &name) == Some(MemberStatus::Up))
        })
        .await
        .expect("victim joined");
        let killed = Instant::now();
        victim.kill().await;
        h.run_until(DEADLINE * 2, "everyone marks the victim down", |h| {
            h.live().iter().all(|&i| gone(h.node(i), &name))
        })
        .await
        .expect("victim detected");
        detections.push(killed.elapsed());
    }
    h.shutdown().await;
    (converged, detections)
}

/// Cluster sizes of the figure runs: `FIGURE_SIZES=3,10,30` (the default).
fn sizes() -> Vec<usize> {
    std::env::var("FIGURE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![3, 10, 30])
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "n={} min {:.0} ms, median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 9 / 10).min(v.len() - 1)]),
        ms(v[v.len() - 1])
    )
}

#[actix_rt::test]
async fn a_sigkilled_node_process_is_marked_down_by_every_other_node() {
    let (_, detections) = sigkill_trials(3, 2, Duration::from_millis(200)).await;
    println!("SIGKILL detection (3 nodes, probe 200 ms): {}", summary(detections));
}

#[actix_rt::test]
#[ignore = "long: detection figures for 3, 10 and 30 nodes, 20 trials each, default 1 s probe"]
async fn detection_figures_for_3_10_and_30_nodes() {
    for n in sizes() {
        let (converged, detections) = sigkill_trials(n, 20, Duration::from_secs(1)).await;
        println!("{n} nodes: convergence {converged:?}; SIGKILL detection {}", summary(detections));
    }
}

#[actix_rt::test]
#[ignore = "long: 60 s with 1% loss and 50 ms jitter on every link, default 1 s probe"]
async fn no_false_positive_under_loss_and_jitter() {
    let h = ClusterTestHarness::builder()
        .nodes(5)
        .configure(|_, c| c.probe_interval(Duration::from_secs(1)))
        .start()
        .await
        .expect("harness");
    let seen: Vec<_> = (0..5).map(|i| subscribe(h.node(i))).collect();
    h.set_all(
        LinkConditions::clear().with_loss(0.01).with_latency(Duration::from_millis(5), Duration::from_millis(50)),
    );
    let _ = h.run_until(Duration::from_secs(60), "nothing (a 60 s run)", |_| false).await;
    h.set_all(LinkConditions::clear());
    let count = |kind: &str| {
        seen.iter().map(|s| s.lock().expect("events").iter().filter(|e| e.1 == kind).count()).sum::<usize>()
    };
    let (downs, suspects) = (count("down"), count("suspect"));
    println!("60 s, 5 nodes, 1% loss, 50 ms jitter: {downs} false down, {suspects} suspicions (refuted)");
    assert_eq!(downs, 0, "no member was declared down");
    h.verify_cluster_stability().expect("still one view");
    h.shutdown().await;
}

#[actix_rt::test]
#[ignore = "long: convergence figures for 3, 10 and 30 nodes, 10 runs each, default 1 s probe"]
async fn convergence_figures_for_3_10_and_30_nodes() {
    for n in sizes() {
        let mut times = Vec::new();
        for run in 0..10 {
            let started = Instant::now();
            let h = ClusterTestHarness::builder()
                .nodes(n)
                .seed(run)
                .configure(|_, c| c.probe_interval(Duration::from_secs(1)))
                .start()
                .await
                .expect("harness");
            times.push(started.elapsed());
            h.shutdown().await;
        }
        println!("{n} nodes: every node sees {n} up after {}", summary(times));
    }
}
