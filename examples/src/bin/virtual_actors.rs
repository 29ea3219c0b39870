//! Keyed (virtual) actors across processes: three nodes (this process and two child
//! processes). Carts are reached by key from node-1 and activate where consistent hashing
//! puts them; one is moved to another node while it keeps its items; then node-3 is killed
//! with SIGKILL and its carts answer again from the survivors, with their items (each cart
//! keeps a snapshot on one other node: `recovery = "restart", replicas = 1`).
//!
//! `cargo run -p actix-cluster-examples --bin virtual_actors`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster_examples::node;
use actix_cluster_examples::{AddItem, Cart, Inspector, RecoveryFigures};

const PROBE_MS: u64 = 300;
const WAIT: Duration = Duration::from_secs(30);

fn main() {
    node::main_or_node("virtual_actors", demo);
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let (system, _node2, mut node3) = node::demo_cluster("carts", PROBE_MS, WAIT).await?;

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
    // What each cart holds before the kill: one item each, two in the moved one.
    let before: Vec<u32> = carts.iter().map(|c| if c.key() == mover.key() { 2 } else { 1 }).collect();
    // Every snapshot on node-3 acknowledged by its holder, so the kill loses none of them.
    let inspector = system.spawn(Inspector).placement(Placement::Node("node-3".into())).await?;
    let settled = Instant::now();
    while inspector.send(RecoveryFigures).await?.1 > 0 {
        if settled.elapsed() > WAIT {
            return Err("node-3's snapshots were never acknowledged".into());
        }
        actix_cluster::rt::time::sleep(Duration::from_millis(20)).await;
    }
    println!("\n== SIGKILL node-3, which holds {} cart(s)", on_3.len());
    let killed = Instant::now();
    node3.kill().await;
    for (cart, had) in carts.iter().zip(before) {
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
        if items != had + 1 {
            return Err(format!("{} lost items: {items} after adding one to {had}", cart.key().unwrap_or("?")).into());
        }
    }
    println!(
        "  every cart answered {:?} after the kill with all its items: node-3's carts came back on a \
         survivor from their snapshots",
        killed.elapsed()
    );
    system.shutdown().await;
    Ok(())
}
