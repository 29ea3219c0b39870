//! The quickstart: a 3-node cluster on loopback, in three OS processes.
//!
//! `cargo run -p actix-cluster-examples --bin quickstart`
//!
//! This process is node-1. It starts node-2 and node-3 as child processes (this same
//! program with `node` flags), spawns actors on them, tells and asks across nodes, shows
//! the errors a caller can get, kills node-3 with SIGKILL while a request to it is pending,
//! and stops node-2 gracefully. Lines starting with `[node-2]` / `[node-3]` are printed by
//! actors running in those processes.

use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster_examples::node::{self, NodeArgs};
use actix_cluster_examples::{Add, Counter, Get, Greet, Greeter, SlowGet};

const READY: Duration = Duration::from_secs(20);

fn main() {
    node::main_or_node("quickstart", demo);
}

fn step(text: &str) {
    println!("\n== {text}");
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    actix_cluster_examples::set_node_name("node-1");
    let started = Instant::now();

    step("1. Start node-1 in this process, node-2 and node-3 as child processes");
    let config = ClusterConfig::new().node_name("node-1").bind("127.0.0.1:0").build()?;
    let system = ClusterSystem::new("demo", config).start().await?;
    println!("node-1 listens on {} (pid {})", system.local_addr(), std::process::id());
    let exe = std::env::current_exe()?;
    let seeds = vec![system.local_addr().to_string()];
    let mut children = Vec::new();
    for name in ["node-2", "node-3"] {
        let args = NodeArgs::new("demo", name, &seeds);
        let child = node::spawn_node(&exe, &["node"], &args, READY, true).await?;
        println!("{} listens on {} (pid {})", child.name, child.addr, child.pid().unwrap_or(0));
        children.push(child);
    }
    system.wait_for_peers(&["node-2", "node-3"], READY).await?;
    let peers: Vec<String> = system.peers().iter().map(|p| format!("{} at {}", p.name, p.addr)).collect();
    println!("node-1 is linked to: {}", peers.join(", "));

    step("2. Remote spawn: a Counter on node-2, a Greeter (JSON format, initial state) on node-3");
    let counter = system.remote_actor_with("node-2", Counter { total: 0, verbose: true }).await?;
    println!("Counter #{} lives on {}", counter.actor_id().map_or(0, |id| id.0), counter.node_name().unwrap_or("?"));
    let greeter = system.remote_actor_with("node-3", Greeter { greeting: "Hello".into() }).await?;
    println!("Greeter #{} lives on {}", greeter.actor_id().map_or(0, |id| id.0), greeter.node_name().unwrap_or("?"));

    step("3. Tell: 5 one-way Add messages to the Counter on node-2");
    for n in 1..=5 {
        counter.do_send(Add(n))?;
    }

    step("4. Ask: typed request/response across processes");
    let total = counter.send(Get).await?;
    println!("node-1 asked node-2's Counter for its total: {total} (1+2+3+4+5)");
    let greeting = greeter.send(Greet { name: "node-1".into() }).await?;
    println!("node-1 asked node-3's Greeter: {greeting:?}");

    step("5. The same handle type for a local actor");
    let local = Counter { total: 100, verbose: true }.start_distributed();
    println!("local Counter on {}: Add(1) -> {}", local.node_name().unwrap_or("?"), local.send(Add(1)).await?);

    step("6. Errors are values: unknown node, timeout");
    match system.remote_actor::<Counter>("node-9").await {
        Err(e) => println!("remote_actor on node-9: {e}"),
        Ok(_) => println!("unexpected: node-9 exists"),
    }
    match counter.send_timeout(SlowGet { millis: 1_000 }, Duration::from_millis(100)).await {
        Err(e) => println!("a 1 s request with a 100 ms deadline: {e}"),
        Ok(v) => println!("unexpected reply {v}"),
    }

    step("7. SIGKILL node-3 while a 60 s request to it is pending");
    let doomed = system.remote_actor::<Counter>("node-3").await?;
    let pending = actix_cluster::rt::spawn(async move {
        doomed.send_timeout(SlowGet { millis: 60_000 }, Duration::from_secs(60)).await
    });
    greeter.send(Greet { name: "the last visitor".into() }).await?;
    let mut node3 = children.pop().ok_or("no node-3")?;
    let killed = Instant::now();
    node3.kill().await;
    match pending.await? {
        Err(e) => println!("the pending request failed after {:?}: {e}", killed.elapsed()),
        Ok(v) => println!("unexpected reply {v}"),
    }
    println!("node-1 is now linked to: {:?}", system.peers().iter().map(|p| p.name.as_str()).collect::<Vec<_>>());
    println!("node-2's Counter still answers: total = {}", counter.send(Get).await?);

    step("8. Stop node-2 gracefully, then node-1");
    let node2 = children.pop().ok_or("no node-2")?;
    node2.stop(READY).await?;
    system.shutdown().await;
    println!("\ndone in {:?}: 3 nodes, 3 processes, remote spawn, tell, ask, errors, a crash.", started.elapsed());
    Ok(())
}
