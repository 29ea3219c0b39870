//! The test harness imposes what it claims: latency, loss, duplication, reordering,
//! bandwidth, partitions (both ways and one way) and healing, kills and restarts.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::testkit::faults::LinkConditions;
use actix_cluster::testkit::harness::ClusterTestHarness;
use actix_cluster::testkit::history::{Expectation, History};

thread_local! {
    // Each test runs its nodes on its own thread, so each test has its own history.
    static HISTORY: RefCell<History> = RefCell::new(History::new());
}

fn history() -> History {
    HISTORY.with(|h| h.borrow().clone())
}

#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Record {
    id: u64,
    pad: Vec<u8>,
}

#[cluster_message(result = "usize")]
#[derive(Serialize, Deserialize)]
struct Seen;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Ping(u64);

/// Records every `Record` it receives in the thread's history.
#[distributed_actor(messages(Record, Seen, Ping))]
#[derive(Default, Serialize, Deserialize)]
struct Recorder {
    seen: usize,
}

impl Handler<Record> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: Record, _: &mut Context<Self>) {
        self.seen += 1;
        history().received(msg.id);
    }
}

impl Handler<Seen> for Recorder {
    type Result = usize;
    fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> usize {
        self.seen
    }
}

impl Handler<Ping> for Recorder {
    type Result = u64;
    fn handle(&mut self, msg: Ping, _: &mut Context<Self>) -> u64 {
        msg.0
    }
}

const DEADLINE: Duration = Duration::from_secs(20);

async fn send_records(to: &ActorRef<Recorder>, stream: &str, ids: std::ops::Range<u64>, pad: usize) {
    let h = history();
    for id in ids {
        h.sent(stream, id);
        to.tell(Record { id, pad: vec![0; pad] }).await.expect("queued");
    }
}

/// Waits until the recorder has seen `n` records, or the deadline passes.
async fn wait_seen(h: &ClusterTestHarness, r: &ActorRef<Recorder>, n: usize) -> usize {
    let started = Instant::now();
    loop {
        let seen = r.send(Seen).await.expect("ask");
        if seen >= n || started.elapsed() > DEADLINE {
            return seen;
        }
        h.run_until(Duration::from_millis(20), "poll", |_| false).await.ok();
    }
}

#[actix_rt::test]
async fn latency_is_at_least_the_configured_delay() {
    let h = ClusterTestHarness::start(2).await.expect("harness");
    let r = h.node(0).remote_actor::<Recorder>("node-2").await.expect("spawn");
    let started = Instant::now();
    r.send(Ping(0)).await.expect("ask");
    let baseline = started.elapsed();

    let one_way = Duration::from_millis(40);
    h.set_link(0, 1, LinkConditions::clear().with_latency(one_way, Duration::from_millis(10)));
    h.set_link(1, 0, LinkConditions::clear().with_latency(one_way, Duration::ZERO));
    let mut rtts = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        assert_eq!(r.send(Ping(i)).await.expect("ask"), i);
        rtts.push(started.elapsed());
    }
    let min = rtts.iter().min().copied().unwrap_or_default();
    assert!(min >= one_way * 2, "round trip {min:?} is below twice the one-way latency");
    assert!(min < one_way * 2 + Duration::from_millis(500), "round trip {min:?} unreasonably long");
    println!("ask round trip: {baseline:?} without latency, min {min:?} with 2 x 40 ms (+ up to 10 ms jitter)");
    h.shutdown().await;
}

/// Binomial bound: |observed - n p| <= 5 sigma.
fn within_bound(observed: usize, n: usize, p: f64) -> bool {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    (observed as f64 - mean).abs() <= 5.0 * sigma
}

#[actix_rt::test]
async fn observed_loss_matches_the_configured_rate() {
    let h = ClusterTestHarness::builder().nodes(2).seed(11).start().await.expect("harness");
    let r = h.node(0).remote_actor::<Recorder>("node-2").await.expect("spawn");
    let n = 4_000usize;
    let rate = 0.3;
    h.set_link(0, 1, LinkConditions::clear().with_loss(rate));
    send_records(&r, "node-1", 0..n as u64, 0).await;
    h.set_link(0, 1, LinkConditions::clear());
    // Lost frames are gone for good; everything else arrives, in order, before this ask.
    let seen = r.send(Seen).await.expect("ask after the loss is lifted");
    let lost = n - seen;
    assert!(within_bound(lost, n, rate), "lost {lost} of {n}, configured rate {rate}");
    let stats = h.faults().stats("node-1", "node-2");
    assert!(stats.dropped as usize >= lost, "{stats:?}");
    let report = history().check(Expectation::at_most_once());
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.received, seen);
    println!("loss: {lost} of {n} frames lost at rate {rate} (expected {:.0})", n as f64 * rate);
    h.shutdown().await;
}

#[actix_rt::test]
async fn duplication_and_reordering_show_in_the_history() {
    let h = ClusterTestHarness::builder().nodes(2).seed(5).start().await.expect("harness");
    let r = h.node(0).remote_actor::<Recorder>("node-2").await.expect("spawn");
    let n = 2_000usize;
    h.set_link(
        0,
        1,
        LinkConditions::clear()
            .with_duplicates(0.2)
            .with_reordering(0.1)
            .with_latency(Duration::from_millis(2), Duration::from_millis(1)),
    );
    send_records(&r, "node-1", 0..n as u64, 0).await;
    h.run_until(DEADLINE, "every record arrives at least once", |_| {
        history().check(Expectation::reliable_ordered()).received == n
    })
    .await
    .expect("no frame is lost");
    let report = history().check(Expectation::reliable_ordered());
    assert!(report.lost.is_empty() && report.unexpected.is_empty(), "{report}");
    assert!(within_bound(report.duplicated.len(), n, 0.2), "{} duplicated", report.duplicated.len());
    assert!(!report.reordered.is_empty(), "held-back frames are overtaken: {report}");
    println!("duplication/reordering: {report}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn bandwidth_caps_throughput() {
    let h = ClusterTestHarness::start(2).await.expect("harness");
    let r = h.node(0).remote_actor::<Recorder>("node-2").await.expect("spawn");
    h.set_link(0, 1, LinkConditions::clear().with_bandwidth(200_000));
    let started = Instant::now();
    send_records(&r, "node-1", 0..40, 5_000).await; // 200 kB at 200 kB/s
    assert_eq!(wait_seen(&h, &r, 40).await, 40);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "200 kB at 200 kB/s took only {took:?}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_partition_blocks_traffic_and_heal_restores_it() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let r = h.node(0).remote_actor::<Recorder>("node-2").await.expect("spawn");
    assert_eq!(r.send(Ping(1)).await.expect("ask before the partition"), 1);

    h.partition(&[0], &[1, 2]);
    let err = r.send_timeout(Ping(2), Duration::from_millis(300)).await.expect_err("partitioned");
    assert!(matches!(err, ClusterError::Timeout(_) | ClusterError::LinkDown { .. }), "{err}");
    h.run_until(DEADLINE, "node-1 loses both links", |h| h.node(0).peers().is_empty()).await.expect("cut off");
    h.run_until(DEADLINE, "node-2, node-3 lose node-1", |h| {
        h.node(1).peer("node-1").is_none() && h.node(2).peer("node-1").is_none()
    })
    .await
    .expect("both sides notice");
    assert!(h.node(1).peer("node-3").is_some(), "the majority side stays linked");
    assert!(h.verify_cluster_stability().is_err());

    let healed = Instant::now();
    h.heal();
    h.wait_for_stability(DEADLINE).await.expect("links re-form after heal");
    let r = h.node(0).remote_actor::<Recorder>("node-2").await.expect("spawn after heal");
    assert_eq!(r.send(Ping(3)).await.expect("asks resume"), 3);
    let resumed = healed.elapsed();
    assert!(resumed < Duration::from_secs(5), "asks resumed {resumed:?} after heal");
    println!("partition healed: asks resumed after {resumed:?}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_one_way_partition_blocks_only_its_direction() {
    let h = ClusterTestHarness::start(2).await.expect("harness");
    let on_2 = h.node(0).remote_actor::<Recorder>("node-2").await.expect("spawn");
    let on_1 = h.node(1).remote_actor::<Recorder>("node-1").await.expect("spawn");
    h.partition_one_way(0, 1);
    send_records(&on_2, "node-1", 0..10, 0).await;
    send_records(&on_1, "node-2", 100..110, 0).await;
    // node-2 -> node-1 still flows.
    h.run_until(DEADLINE, "node-2's tells reach node-1", |_| {
        history().check(Expectation::at_most_once()).received >= 10
    })
    .await
    .expect("the open direction delivers");
    // node-1 -> node-2 is dropped; once node-2 drops the silent link nothing can arrive.
    h.run_until(DEADLINE, "node-2 drops the silent link", |h| h.node(1).peer("node-1").is_none())
        .await
        .expect("silence detected");
    let received: Vec<u64> = history()
        .events()
        .into_iter()
        .filter_map(|e| match e {
            actix_cluster::testkit::history::Event::Received { id } => Some(id),
            _ => None,
        })
        .collect();
    assert!(received.iter().all(|id| (100..110).contains(id)), "nothing from node-1 arrived: {received:?}");
    assert_eq!(received.len(), 10);
    h.heal();
    h.wait_for_stability(DEADLINE).await.expect("relinked");
    h.shutdown().await;
}

#[actix_rt::test]
async fn kill_drops_links_and_restart_rejoins_with_a_new_incarnation() {
    let mut h = ClusterTestHarness::start(3).await.expect("harness");
    let doomed = h.node(0).remote_actor::<Recorder>("node-3").await.expect("spawn");
    let old_id = h.node(2).node_id();
    h.kill(2);
    h.run_until(DEADLINE, "node-1 and node-2 see node-3's links drop", |h| {
        h.node(0).peer("node-3").is_none() && h.node(1).peer("node-3").is_none()
    })
    .await
    .expect("links drop");
    assert!(matches!(doomed.send(Ping(1)).await, Err(ClusterError::LinkDown { .. })));
    h.wait_for_stability(DEADLINE).await.expect("the two live nodes agree");

    let new_id = h.restart(2).await.expect("restart").node_id();
    assert_ne!(new_id, old_id, "a restarted node is a new incarnation");
    h.wait_for_stability(DEADLINE).await.expect("rejoined");
    assert_eq!(h.node(0).peer("node-3").map(|p| p.id), Some(new_id));
    let fresh = h.node(0).remote_actor::<Recorder>("node-3").await.expect("spawn on the new incarnation");
    assert_eq!(fresh.send(Ping(7)).await.expect("ask"), 7);

    h.stop(1).await;
    h.run_until(DEADLINE, "a graceful stop is seen at once", |h| h.node(0).peer("node-2").is_none())
        .await
        .expect("goodbye");
    h.shutdown().await;
}
