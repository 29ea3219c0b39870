//! Membership and failure detection, decentralized (SWIM) and centralized (masters), on
//! real loopback links through the test harness.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::testkit::harness::ClusterTestHarness;

const DEADLINE: Duration = Duration::from_secs(30);

fn names(h: &ClusterTestHarness, idx: &[usize]) -> BTreeSet<String> {
    idx.iter().map(|&i| h.name(i).to_owned()).collect()
}

#[actix_rt::test]
async fn a_one_way_partition_heals_into_one_view() {
    let _ = tracing_subscriber::fmt().with_env_filter("actix_cluster_runtime=debug,foca=debug").try_init();
    let h = ClusterTestHarness::start(2).await.expect("harness");
    h.partition_one_way(0, 1);
    h.run_until(DEADLINE, "node-2 drops the link", |h| h.node(1).peer("node-1").is_none()).await.expect("down");
    h.heal();
    let r = h.wait_for_stability(DEADLINE).await;
    for i in 0..2 {
        eprintln!(
            "{}: {:?}",
            h.name(i),
            h.node(i).members().iter().map(|m| (m.name.clone(), m.status, m.generation)).collect::<Vec<_>>()
        );
    }
    r.expect("one view");
    let _ = names(&h, &[0]);
    let _ = Instant::now();
    h.shutdown().await;
}
