//! Keyed (virtual) actors across processes: three nodes (this process and two child
//! processes). Carts are reached by key from node-1 and activate where consistent hashing
//! puts them; one is moved to another node while it keeps its items; then node-3 is killed
//! with SIGKILL and its carts answer again from the survivors.
//!
//! `cargo run -p actix-cluster-examples --bin virtual_actors`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster_examples::node::{self, NodeArgs};
use actix_cluster_examples::{AddItem, Cart};

const PROBE_MS: u64 = 300;
const WAIT: Duration = Duration::from_secs(30);

fn main() {
    node::main_or_node("virtual_actors", demo);
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    actix_cluster_examples::set_node_name("node-1");
    let config = ClusterConfig::new()
        .node_name("node-1")
        .bind("127.0.0.1:0")
        .probe_interval(Duration::from_millis(PROBE_MS))
        .build()?;
    let system = ClusterSystem::new("carts", config).start().await?;
    let exe = std::env::current_exe()?;
    let seeds = vec![system.local_addr().to_string()];
    let args = |name: &str| {
        let mut a = NodeArgs::new("carts", name, &seeds);
        a.probe_ms = PROBE_MS;
        a
    };
    println!("== starting node-2 and node-3 as processes");
    let _node2 = node::spawn_node(&exe, &["node"], &args("node-2"), WAIT, true).await?;
    let mut node3 = node::spawn_node(&exe, &["node"], &args("node-3"), WAIT, true).await?;
    let started = Instant::now();
    while system.membership().up_members().len() < 3 || system.peers().len() < 2 {
        if started.elapsed() > WAIT {
            return Err("the three nodes did not form a cluster".into());
        }
        actix_cluster::rt::time::sleep(Duration::from_millis(20)).await;
    }

    println!("\n== node-1 puts an item in eight carts, by key: each activates where its key hashes");
    let carts: Vec<ActorRef<Cart>> = (1..=8).map(|k| system.actor_for::<Cart>(format!("cart-{k}"))).collect();
    let mut placed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for cart in &carts {
        cart.send(AddItem("apples".into())).await?;
        let node = cart.location().map(|l| l.node).unwrap_or_default();
        placed.entry(node).or_default().push(cart.key().unwrap_or_default().to_owned());
    }
    for (node, keys) in &placed {
        println!("  {node}: {}", keys.join(", "));
    }

    println!("\n== moving one cart to another node while it keeps its items");
    let mover = &carts[0];
    let from = mover.location().map(|l| l.node).unwrap_or_default();
    let to = if from == "node-2" { "node-1" } else { "node-2" };
    let moved = system.migrate(mover, to).await?;
    println!(
        "  {} moved from {from} to {}",
        mover.key().unwrap_or("?"),
        moved.location().map(|l| l.node).unwrap_or_default()
    );
    let items = mover.send(AddItem("pears".into())).await?;
    println!("  through the same handle it now holds {items} items (its apples came along)");

    let on_3: Vec<&ActorRef<Cart>> =
        carts.iter().filter(|c| c.location().is_some_and(|l| l.node == "node-3")).collect();
    println!("\n== SIGKILL node-3, which holds {} cart(s)", on_3.len());
    let killed = Instant::now();
    node3.kill().await;
    for cart in &carts {
        let deadline = Instant::now() + WAIT;
        let items = loop {
            match cart.send(AddItem("milk".into())).await {
                Ok(items) => break items,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    actix_cluster::rt::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("{} never answered again: {e}", cart.key().unwrap_or("?")).into()),
            }
        };
        let node = cart.location().map(|l| l.node).unwrap_or_default();
        println!("  {} answers from {node} with {items} item(s)", cart.key().unwrap_or("?"));
    }
    println!(
        "  every cart answered {:?} after the kill; node-3's carts started afresh on a survivor \
         (snapshots to other nodes are what would keep their items)",
        killed.elapsed()
    );
    system.shutdown().await;
    Ok(())
}
