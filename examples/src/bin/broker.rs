//! The distributed broker across processes, with every delivery guarantee: node-1 (this
//! process) publishes ticks to six topics, one per guarantee; node-2 and node-3 (child
//! processes) each run one subscriber per topic. Halfway through, node-3 is killed with
//! SIGKILL. At the end, what node-2's subscribers handled is printed against what node-1
//! saw confirmed and what each guarantee promises; the program fails if a promise does not
//! hold.
//!
//! `cargo run -p actix-cluster-examples --bin broker`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::{DeliveryConfig, DeliveryFailure, DeliveryStatus, PublishReceipt};
use actix_cluster_examples::node::{self, NodeArgs};
use actix_cluster_examples::{Tick, TickCounts, TickStats, Ticker, TICK_TOPICS};

const PROBE_MS: u64 = 300;
const WAIT: Duration = Duration::from_secs(30);
const TICKS: u64 = 200;

fn main() {
    node::init_logging();
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("node") {
        args.next();
        let node_args = NodeArgs::parse(args).unwrap_or_else(|e| {
            eprintln!("broker node: {e}");
            std::process::exit(2)
        });
        // A subscriber per topic on every node process.
        let run = node::run_with(node_args, |system| {
            for topic in TICK_TOPICS {
                let _ = Ticker { system: system.clone(), topic }.start();
            }
        });
        if let Err(e) = actix_cluster::rt::System::new().block_on(run) {
            eprintln!("broker node: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = actix_cluster::rt::System::new().block_on(demo()) {
        eprintln!("broker failed: {e}");
        std::process::exit(1);
    }
}

fn guarantee(topic: &str) -> DeliveryGuarantee {
    match topic {
        "at-most-once" => DeliveryGuarantee::AtMostOnce,
        "at-least-once" => DeliveryGuarantee::AtLeastOnce,
        "exactly-once" => DeliveryGuarantee::ExactlyOnce,
        "ordered" => DeliveryGuarantee::Ordered,
        "causal" => DeliveryGuarantee::Causal,
        _ => DeliveryGuarantee::Transactional,
    }
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    actix_cluster_examples::set_node_name("node-1");
    // A copy for a node that is marked down waits this long for it to come back.
    let delivery = DeliveryConfig { relocate_for: Duration::from_secs(3), ..DeliveryConfig::default() };
    let config = ClusterConfig::new()
        .node_name("node-1")
        .bind("127.0.0.1:0")
        .probe_interval(Duration::from_millis(PROBE_MS))
        .delivery(delivery)
        .build()?;
    let system = ClusterSystem::new("ticks", config).start().await?;
    let exe = std::env::current_exe()?;
    let seeds = vec![system.local_addr().to_string()];
    let args = |name: &str| {
        let mut a = NodeArgs::new("ticks", name, &seeds);
        a.probe_ms = PROBE_MS;
        a
    };
    println!("== starting node-2 and node-3 as processes, each with a subscriber per guarantee");
    let _node2 = node::spawn_node(&exe, &["node"], &args("node-2"), WAIT, true).await?;
    let mut node3 = node::spawn_node(&exe, &["node"], &args("node-3"), WAIT, true).await?;
    let started = Instant::now();
    for topic in TICK_TOPICS {
        while system.broker().subscribed_nodes::<Tick>(Some(topic)).await != ["node-2", "node-3"] {
            if started.elapsed() > WAIT {
                return Err(format!("node-1 never saw both nodes subscribe to {topic}").into());
            }
            actix_cluster::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    println!("\n== node-1 publishes {TICKS} ticks to each topic; node-3 is killed (SIGKILL) halfway");
    let mut receipts: BTreeMap<&str, Vec<PublishReceipt>> = BTreeMap::new();
    let mut kill_at = None;
    for n in 0..TICKS {
        if n == TICKS / 2 {
            node3.kill().await;
            kill_at = Some(Instant::now());
            println!("  node-3 killed after {n} ticks per topic");
        }
        for topic in TICK_TOPICS {
            let g = guarantee(topic);
            if g == DeliveryGuarantee::AtMostOnce {
                system.broker().publish_to(topic, Tick { n }).await?;
            } else {
                let r = system.broker().publish_to_with_guarantee(topic, Tick { n }, g).await?;
                receipts.entry(topic).or_default().push(r);
            }
        }
        actix_cluster::rt::time::sleep(Duration::from_millis(5)).await;
    }
    println!("  all published; waiting for every receipt to settle");
    // Per topic: (confirmed for node-2, confirmed for node-3, node-3 gone, other outcomes).
    let mut confirmed: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new();
    for (topic, rs) in receipts {
        let c = confirmed.entry(topic).or_default();
        for r in rs {
            let outcome = r.settled().await;
            c.0 += u64::from(outcome.delivered.iter().any(|n| n == "node-2"));
            c.1 += u64::from(outcome.delivered.iter().any(|n| n == "node-3"));
            c.2 += u64::from(outcome.gone.iter().any(|n| n == "node-3"));
            c.3 += outcome
                .failed
                .iter()
                .filter(|(_, s)| !matches!(s, DeliveryStatus::Failed(DeliveryFailure::Aborted(_))))
                .count() as u64;
        }
    }
    if let Some(at) = kill_at {
        println!("  settled {:?} after the kill", at.elapsed());
    }

    let stats = system.spawn(TickStats).placement(Placement::Node("node-2".into())).await?;
    let counts = stats.send(TickCounts).await?;
    println!("\n== what node-2's subscribers handled, against what node-1 saw confirmed");
    println!(
        "{:<15}{:>9}{:>10}{:>8}{:>12}{:>12}  promise",
        "guarantee", "handled", "distinct", "late", "confirmed", "node-3 ok"
    );
    let mut broken = Vec::new();
    for topic in TICK_TOPICS {
        let (handled, distinct, late) = counts.get(topic).copied().unwrap_or_default();
        let (for2, for3, _gone3, _other) = confirmed.get(topic).copied().unwrap_or_default();
        let (promise, holds) = match guarantee(topic) {
            DeliveryGuarantee::AtMostOnce => ("each at most once", distinct == handled && handled <= TICKS),
            DeliveryGuarantee::AtLeastOnce => ("every confirmed one handled", distinct >= for2),
            DeliveryGuarantee::ExactlyOnce => ("every confirmed one, once", distinct >= for2 && handled == distinct),
            DeliveryGuarantee::Transactional => ("all nodes or none, once", handled == distinct && distinct == for2),
            _ => ("every confirmed one, once, in order", distinct >= for2 && handled == distinct && late == 0),
        };
        let for3 = if guarantee(topic) == DeliveryGuarantee::AtMostOnce { "-".to_owned() } else { for3.to_string() };
        let for2_text =
            if guarantee(topic) == DeliveryGuarantee::AtMostOnce { "-".to_owned() } else { for2.to_string() };
        println!(
            "{topic:<15}{handled:>9}{distinct:>10}{late:>8}{for2_text:>12}{for3:>12}  {promise}: {}",
            if holds { "holds" } else { "BROKEN" }
        );
        if !holds {
            broken.push(topic);
        }
    }
    println!(
        "\n(node-2 stayed up: every guaranteed tick confirmed for it must be there; the \
         transactional ones published after the kill abort until node-3 is marked down, then \
         commit on node-2 alone.)"
    );
    system.shutdown().await;
    if broken.is_empty() {
        println!("every promise held");
        Ok(())
    } else {
        Err(format!("promises broken: {broken:?}").into())
    }
}
