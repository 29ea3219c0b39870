//! Passivation gives memory back: 10,000 keyed activations on an in-process cluster, idle,
//! all passivated, with the heap measured by a counting allocator. Alone in its test binary,
//! so that no other test's allocations are counted.

use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::testkit::harness::ClusterTestHarness;
use futures_util::future::join_all;

const DEADLINE: Duration = Duration::from_secs(30);

/// Messages this activation handled.
#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Pings;

/// Counts the heap this test process uses.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// Heap bytes in use by the whole process, in KiB.
fn heap_kib() -> usize {
    ALLOCATOR.allocated() / 1024
}

async fn activations(h: &ClusterTestHarness, baseline: usize) -> usize {
    (0..h.len()).map(|i| h.node(i).local_actor_count()).sum::<usize>() - baseline
}

/// Passivated after 15 s without a message: far longer than activating all 10,000 takes
/// (about 4 s here, more on a busy machine), so that they are all active at the peak.
#[distributed_actor(messages(Pings), keyed)]
#[derive(Default, Serialize, Deserialize)]
struct Sleepy {
    key: String,
    pings: u64,
}

impl KeyedActor for Sleepy {
    fn from_key(key: &str) -> Self {
        Sleepy { key: key.to_owned(), pings: 0 }
    }

    fn passivate_after() -> Option<Duration> {
        Some(Duration::from_secs(15))
    }
}

impl Handler<Pings> for Sleepy {
    type Result = u64;
    fn handle(&mut self, _: Pings, _: &mut Context<Self>) -> u64 {
        self.pings
    }
}

/// 10,000 keyed activations, idle: passivation returns the node's memory near its baseline.
#[actix_rt::test]
async fn ten_thousand_idle_activations_give_their_memory_back() {
    // A load test on a shared machine: it measures memory, not latency, so a slow moment
    // must not fail an activation.
    let h = ClusterTestHarness::builder()
        .nodes(3)
        .configure(|_, c| c.request_timeout(Duration::from_secs(20)))
        .start()
        .await
        .expect("harness");
    let baseline_actors: usize = (0..3).map(|i| h.node(i).local_actor_count()).sum();
    let before = heap_kib();
    let started = Instant::now();
    for chunk in (0..10_000).collect::<Vec<u32>>().chunks(100) {
        let asks = chunk.iter().map(|k| {
            let idle = h.node((*k % 3) as usize).actor_for::<Sleepy>(format!("many-{k}"));
            async move { idle.send(Pings).await }
        });
        for answer in join_all(asks).await {
            answer.expect("activated");
        }
    }
    let activated = started.elapsed();
    let peak = heap_kib();
    let active = activations(&h, baseline_actors).await;
    let deadline = Instant::now() + DEADLINE * 2;
    while activations(&h, baseline_actors).await > 0 {
        assert!(Instant::now() < deadline, "{} activations left", activations(&h, baseline_actors).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = heap_kib();
    println!(
        "virtual actors: 10,000 keys activated in {activated:?} ({active} still active then); heap in use \
         {before} KiB before, {peak} KiB with them active, {after} KiB once all were passivated"
    );
    assert!(active > 5_000, "most keys are active at the peak: {active}");
    assert!(after < peak, "passivation gives memory back: {after} KiB after, {peak} KiB at the peak");
    h.shutdown().await;
}
