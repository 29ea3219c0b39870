//! Membership as it happens: four nodes (this process and three child processes) form a
//! decentralized cluster; one child is killed with SIGKILL, one leaves gracefully, and the
//! killed one comes back. An actor on node-1 prints every membership event it receives.
//!
//! `cargo run -p actix-cluster-examples --bin cluster_membership`

use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster_examples::node::{self, NodeArgs};

const PROBE_MS: u64 = 300;
const WAIT: Duration = Duration::from_secs(30);

/// Prints membership events with the time since the demo started.
struct Printer {
    started: Instant,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<MembershipEvent> for Printer {
    type Result = ();
    fn handle(&mut self, event: MembershipEvent, _: &mut Context<Self>) {
        let t = self.started.elapsed().as_secs_f64();
        let m = event.member();
        let what = match &event {
            MembershipEvent::MemberUp(_) => "is UP".to_string(),
            MembershipEvent::MemberSuspect(_) => "is SUSPECT (a probe failed)".to_string(),
            MembershipEvent::MemberDown(_) => "is DOWN (declared failed)".to_string(),
            MembershipEvent::MemberLeft(_) => "LEFT the cluster".to_string(),
            MembershipEvent::MemberRemoved(_) => format!("REMOVED (incarnation {:x} gone)", m.id.0 >> 96),
            MembershipEvent::ResourcesChanged(_) => return, // too chatty for the demo
        };
        println!("  [{t:6.2}s] node-1 sees {} {what}", m.name);
    }
}

fn main() {
    node::main_or_node("cluster_membership", demo);
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !cond() {
        if started.elapsed() > WAIT {
            return Err(format!("timed out waiting for {what}"));
        }
        actix_cluster::rt::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let config = ClusterConfig::new()
        .node_name("node-1")
        .bind("127.0.0.1:0")
        .role("frontend")
        .probe_interval(Duration::from_millis(PROBE_MS))
        .build()?;
    let system = ClusterSystem::new("members", config).start().await?;
    system.membership().subscribe(Printer { started }.start().recipient());
    println!("node-1 listens on {}; failure detection: SWIM, probe every {PROBE_MS} ms", system.local_addr());

    let exe = std::env::current_exe()?;
    let seeds = vec![system.local_addr().to_string()];
    let spawn = |name: &str| {
        let mut args = NodeArgs::new("members", name, &seeds);
        args.probe_ms = PROBE_MS;
        args
    };
    println!("\n== starting node-2, node-3, node-4 as processes (seed: node-1)");
    let mut children = Vec::new();
    for name in ["node-2", "node-3", "node-4"] {
        children.push(node::spawn_node(&exe, &["node"], &spawn(name), WAIT, true).await?);
    }
    wait_until("all four up", || system.membership().up_members().len() == 4).await?;
    println!("\n== members as node-1 sees them");
    actix_cluster::rt::time::sleep(Duration::from_millis(2_500)).await; // let a resource report arrive
    for m in system.membership().members() {
        let res = m.resources.map_or("no report yet".to_string(), |r| {
            format!("{} actors, {} MiB, {} millicores", r.actor_count, r.memory_bytes >> 20, r.cpu_millicores)
        });
        println!("  {:<7} {:?} roles {:?} at {} ({res})", m.name, m.status, m.profile.roles, m.addr);
    }

    println!("\n== SIGKILL node-3");
    let mut node3 = children.remove(1);
    let killed = Instant::now();
    node3.kill().await;
    wait_until("node-3 down", || system.membership().member("node-3").is_none_or(|m| m.status == MemberStatus::Down))
        .await?;
    println!("  node-3 declared down {:?} after the kill", killed.elapsed());

    println!("\n== node-4 leaves gracefully");
    let node4 = children.remove(1);
    node4.stop(WAIT).await?;
    wait_until("node-4 gone", || system.membership().member("node-4").is_none_or(|m| m.status != MemberStatus::Up))
        .await?;

    println!("\n== node-3 restarts (same name, new incarnation)");
    let node3 = node::spawn_node(&exe, &["node"], &spawn("node-3"), WAIT, true).await?;
    wait_until("node-3 up again", || system.membership().up_members().contains("node-3")).await?;
    actix_cluster::rt::time::sleep(Duration::from_millis(200)).await;

    println!("\n== shutting down");
    node3.stop(WAIT).await?;
    for c in children {
        c.stop(WAIT).await?;
    }
    system.shutdown().await;
    println!("done in {:?}", started.elapsed());
    Ok(())
}
