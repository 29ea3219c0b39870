//! The cluster registry across processes: three nodes (this process and two child
//! processes). A counter is started on node-3 under the name `orders`; node-3 writes the
//! record, the directory owner chosen by the ring holds it, and node-1 looks the name up and
//! uses it. Then node-3 is killed with SIGKILL: once it is marked down the name is gone from
//! every node, and the name is free to be taken again.
//!
//! `cargo run -p actix-cluster-examples --bin cluster_registry`

use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::NameEvent;
use actix_cluster_examples::node;
use actix_cluster_examples::{Add, Counter, Get};

const PROBE_MS: u64 = 300;
const WAIT: Duration = Duration::from_secs(30);

fn main() {
    node::main_or_node("cluster_registry", demo);
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let (system, _node2, mut node3) = node::demo_cluster("registry", PROBE_MS, WAIT).await?;

    println!("\n== spawning a counter on node-3 under the name `orders`");
    let mut watch = system.registry().watch("orders");
    let counter = system.spawn(Counter::default()).placement(Placement::Node("node-3".into())).name("orders").await?;
    let owner = system.registry().owner_of("orders").await.unwrap_or_default();
    println!(
        "  registered: actor {} on {}; node-3 wrote the record, {owner} holds it in the directory",
        counter.identity().map(|i| i.to_string()).unwrap_or_default(),
        counter.node_name().unwrap_or("?"),
    );
    if let Some(NameEvent::Registered { location, .. }) = watch.next().await {
        println!("  node-1's watch on `orders`: registered, on {} as actor {}", location.node, location.actor);
    }

    println!("\n== node-1 looks `orders` up and uses it");
    let found = system.registry().lookup::<Counter>("orders").await?.ok_or("`orders` does not resolve")?;
    found.send(Add(40)).await?;
    println!("  orders on {} now counts {}", found.node_name().unwrap_or("?"), found.send(Add(2)).await?);
    let again = Instant::now();
    system.registry().lookup::<Counter>("orders").await?;
    println!("  a second lookup comes from node-1's cache in {:?}", again.elapsed());

    println!("\n== SIGKILL node-3, the host of `orders`");
    let killed = Instant::now();
    node3.kill().await;
    loop {
        match actix_cluster::rt::time::timeout(WAIT, watch.next()).await {
            Ok(Some(NameEvent::Unregistered)) => break,
            Ok(Some(other)) => println!("  watch: {other:?}"),
            Ok(None) | Err(_) => return Err("`orders` never went away".into()),
        }
    }
    let down = system.membership().member("node-3").map(|m| format!("{:?}", m.status)).unwrap_or("removed".into());
    println!("  watch: Unregistered {:?} after the kill (node-3 is {down})", killed.elapsed());
    let gone = system.registry().lookup::<Counter>("orders").await?;
    println!("  lookup(\"orders\") on node-1: {}", if gone.is_none() { "None" } else { "still there!" });
    if gone.is_some() {
        return Err("a dead node's name survived".into());
    }

    println!("\n== the name is free again: a new counter on node-2 takes it");
    let fresh = system.spawn(Counter::default()).placement(Placement::Node("node-2".into())).name("orders").await?;
    fresh.send(Add(1)).await?;
    let resolved = system.registry().lookup::<Counter>("orders").await?.ok_or("`orders` does not resolve")?;
    println!("  orders now on {} counting {}", resolved.node_name().unwrap_or("?"), resolved.send(Get).await?);
    system.shutdown().await;
    Ok(())
}
