//! Live migration on in-process clusters: a running actor moves with its state, messages
//! sent meanwhile reach it in order at the new node, old handles keep working, and a
//! failed move leaves it running where it was.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use actix_cluster::prelude::*;
use actix_cluster::testkit::harness::ClusterTestHarness;
use actix_cluster::testkit::history::{Expectation, History};
use actix_cluster::{MigrationConfig, MigrationError};
use futures_util::future::join_all;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A sequenced message from one sender.
#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Seq {
    sender: u32,
    n: u64,
}

/// An ask in the same sequence.
#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct SeqAsk {
    sender: u32,
    n: u64,
}

/// (messages handled, out-of-order or repeated ones seen)
#[cluster_message(result = "(u64, u64)")]
#[derive(Serialize, Deserialize)]
struct Report;

/// Checks every sender's sequence as it goes: each message must be the next one.
#[distributed_actor(messages(Seq, SeqAsk, Report))]
#[derive(Default, Serialize, Deserialize)]
struct Ledger {
    next: BTreeMap<u32, u64>,
    handled: u64,
    violations: u64,
}

impl Ledger {
    fn see(&mut self, sender: u32, n: u64) {
        let next = self.next.entry(sender).or_insert(0);
        if n != *next {
            self.violations += 1;
        }
        *next = n + 1;
        self.handled += 1;
    }
}

impl Handler<Seq> for Ledger {
    type Result = ();
    fn handle(&mut self, m: Seq, _: &mut Context<Self>) {
        self.see(m.sender, m.n);
    }
}

impl Handler<SeqAsk> for Ledger {
    type Result = u64;
    fn handle(&mut self, m: SeqAsk, _: &mut Context<Self>) -> u64 {
        self.see(m.sender, m.n);
        self.handled
    }
}

impl Handler<Report> for Ledger {
    type Result = MessageResult<Report>;
    fn handle(&mut self, _: Report, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.handled, self.violations))
    }
}

#[actix_rt::test]
async fn a_moved_actor_keeps_its_state_and_its_old_handles() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let ledger = h.node(0).spawn_local(Ledger::default());
    h.node(0).registry().register("ledger", &ledger).await.expect("register");
    for n in 0..100 {
        ledger.do_send(Seq { sender: 1, n }).expect("tell");
    }
    let before = h.node(1).local_actor_count();
    let moved = h.node(0).migrate(&ledger, "node-2").await.expect("migrate");
    assert_eq!(moved.location().expect("located").node, "node-2");
    assert_eq!(moved.identity(), ledger.identity(), "the identity stays");
    assert_eq!(h.node(1).local_actor_count(), before + 1);
    // Its state came along: the hundred tells handled before the move.
    assert_eq!(moved.send(Report).await.expect("ask"), (100, 0));
    // The old handle on node-1 still works (forwarded), in order with the new one.
    ledger.do_send(Seq { sender: 1, n: 100 }).expect("tell through the old handle");
    assert_eq!(ledger.send(SeqAsk { sender: 1, n: 101 }).await.expect("ask through the old handle"), 102);
    // Every node finds it at its new place by name.
    for i in 0..3 {
        let found = h.node(i).registry().lookup_uncached::<Ledger>("ledger").await.expect("lookup").expect("found");
        assert_eq!(found.location().expect("located").node, "node-2", "from node {i}");
        assert_eq!(found.send(Report).await.expect("ask").0, 102);
    }
    // And it moves again, from where it is now.
    let again = h.node(1).migrate(&moved, "node-3").await.expect("migrate again");
    assert_eq!(again.send(Report).await.expect("ask"), (102, 0));
    // Any node can ask: node-1 asks node-3, where it runs now, to move it to node-1.
    let home = h.node(0).migrate(&again, "node-1").await.expect("moved on request");
    assert!(home.is_local(), "a handle on node-1 to an actor on node-1");
    assert_eq!(home.send(Report).await.expect("ask"), (102, 0));
    // A handle to where the actor no longer runs cannot move it.
    let stale = h.node(0).actor_ref_at::<Ledger>(again.identity().expect("id"), again.location().expect("loc"));
    let err = h.node(1).migrate(&stale, "node-2").await.expect_err("not there any more");
    assert!(matches!(err, ClusterError::Migration(MigrationError::NotHere)), "{err}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn messages_sent_during_moves_arrive_once_and_in_order() {
    let h = ClusterTestHarness::start(4).await.expect("harness");
    let ledger = h.node(0).spawn_local(Ledger::default());
    h.node(0).registry().register("busy", &ledger).await.expect("register");
    // Three senders on three nodes, each with a handle found by name, tell and ask in one sequence.
    const PER_SENDER: u64 = 2_000;
    let senders = (1..4).map(|i| {
        let node = h.node(i).clone();
        async move {
            let target = node.registry().lookup::<Ledger>("busy").await.expect("lookup").expect("found");
            for n in 0..PER_SENDER {
                if n % 10 == 9 {
                    target.send(SeqAsk { sender: i as u32, n }).await.expect("ask");
                } else {
                    target.tell(Seq { sender: i as u32, n }).await.expect("tell");
                }
            }
        }
    });
    let moves = async {
        let mut current = ledger.clone();
        let mut pauses = Vec::new();
        for k in 0..6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let here = current.location().expect("located").node;
            let from = h.names().iter().position(|n| *n == here).expect("a node");
            let to = h.name((from + 1) % 4).to_owned();
            let started = Instant::now();
            current = h.node(from).migrate(&current, &to).await.unwrap_or_else(|e| panic!("move {k}: {e}"));
            pauses.push(started.elapsed());
        }
        pauses
    };
    let (_, pauses) = futures_util::join!(join_all(senders), moves);
    let last = h.node(0).registry().lookup_uncached::<Ledger>("busy").await.expect("lookup").expect("found");
    let (handled, violations) = last.send(Report).await.expect("report");
    println!("migration: 6 moves under load from 3 senders, each move took {pauses:?}");
    assert_eq!(handled, 3 * PER_SENDER, "none lost, none twice");
    assert_eq!(violations, 0, "in order per sender");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_move_to_an_unreachable_node_fails_and_the_actor_stays() {
    let h = ClusterTestHarness::builder()
        .nodes(3)
        .configure(|_, c| {
            c.migration(MigrationConfig {
                timeout: Duration::from_millis(500),
                grace: Duration::from_secs(5),
                ..MigrationConfig::default()
            })
        })
        .start()
        .await
        .expect("harness");
    let ledger = h.node(0).spawn_local(Ledger::default());
    ledger.do_send(Seq { sender: 1, n: 0 }).expect("tell");
    // node-3 receives nothing from node-1 any more; the link stays up.
    h.partition_one_way(0, 2);
    let moving = h.node(0).migrate(&ledger, "node-3");
    let sent_meanwhile = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ledger.tell(Seq { sender: 1, n: 1 }).await.expect("tell while moving");
    };
    let (result, ()) = futures_util::join!(moving, sent_meanwhile);
    let err = result.expect_err("the target never answers");
    assert!(matches!(err, ClusterError::Migration(MigrationError::TargetUnavailable(_))), "{err}");
    // Still here, with what was sent meanwhile.
    assert!(ledger.is_local());
    assert_eq!(ledger.send(Report).await.expect("ask"), (2, 0));
    h.shutdown().await;
}

/// What the load test's actors received, wherever they ran (one process, one history).
fn history() -> &'static History {
    static HISTORY: OnceLock<History> = OnceLock::new();
    HISTORY.get_or_init(History::new)
}

/// A message with a history id.
#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Logged(u64);

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct LoggedAsk(u64);

/// Records every message it handles in the process's history.
/// How many messages it handled (not recorded).
#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Handled;

#[distributed_actor(messages(Logged, LoggedAsk, Handled))]
#[derive(Default, Serialize, Deserialize)]
struct Recorder {
    handled: u64,
}

impl Handler<Logged> for Recorder {
    type Result = ();
    fn handle(&mut self, Logged(id): Logged, _: &mut Context<Self>) {
        history().received(id);
        self.handled += 1;
    }
}

impl Handler<Handled> for Recorder {
    type Result = u64;
    fn handle(&mut self, _: Handled, _: &mut Context<Self>) -> u64 {
        self.handled
    }
}

impl Handler<LoggedAsk> for Recorder {
    type Result = u64;
    fn handle(&mut self, LoggedAsk(id): LoggedAsk, _: &mut Context<Self>) -> u64 {
        history().received(id);
        self.handled += 1;
        self.handled
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The load: 3 sender nodes each send 10,000 tells and 1,000 asks to 50 actors
/// while 20 migrations move them among 4 nodes; the history checker finds nothing lost,
/// nothing twice and nothing out of order per sender and actor.
#[actix_rt::test]
async fn twenty_moves_under_load_lose_nothing_duplicate_nothing_and_keep_order() {
    const ACTORS: usize = 50;
    const PER_SENDER: u64 = 11_000;
    let h = ClusterTestHarness::start(4).await.expect("harness");
    for k in 0..ACTORS {
        let node = h.node(k % 4);
        let actor = node.spawn_local(Recorder::default());
        node.registry().register(&format!("rec-{k}"), &actor).await.expect("register");
    }
    let senders = (1..4).map(|i| {
        let node = h.node(i).clone();
        async move {
            let mut targets = Vec::new();
            for k in 0..ACTORS {
                targets.push(
                    node.registry().lookup::<Recorder>(&format!("rec-{k}")).await.expect("lookup").expect("found"),
                );
            }
            for n in 0..PER_SENDER {
                let k = (n as usize) % ACTORS;
                let id = ((i as u64) << 40) | ((k as u64) << 24) | n;
                history().sent(&format!("s{i}-a{k}"), id);
                if n % 11 == 10 {
                    targets[k].send(LoggedAsk(id)).await.expect("ask");
                    history().acked(id);
                } else {
                    targets[k].tell(Logged(id)).await.expect("tell");
                }
            }
        }
    });
    let moves = async {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut pauses = Vec::new();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            let k = rng.random_range(0..ACTORS);
            let name = format!("rec-{k}");
            let here = h.node(0).registry().lookup_uncached::<Recorder>(&name).await.expect("lookup").expect("found");
            let from_name = here.location().expect("located").node;
            let from = h.names().iter().position(|n| *n == from_name).expect("a node");
            let to = (from + rng.random_range(1..4)) % 4;
            let local = h.node(from).registry().lookup::<Recorder>(&name).await.expect("lookup").expect("found");
            let started = Instant::now();
            h.node(from).migrate(&local, h.name(to)).await.unwrap_or_else(|e| panic!("moving {name}: {e}"));
            pauses.push(started.elapsed());
        }
        pauses
    };
    let started = Instant::now();
    let (_, mut pauses) = futures_util::join!(join_all(senders), moves);
    let sending = started.elapsed();
    // Every tell has been handled once the actors answer an ask each sender sends after them.
    let mut total = 0;
    for k in 0..ACTORS {
        let name = format!("rec-{k}");
        for i in 1..4 {
            let target = h.node(i).registry().lookup::<Recorder>(&name).await.expect("lookup").expect("found");
            let handled = target.send(Handled).await.expect("final ask");
            if i == 3 {
                total += handled;
            }
        }
    }
    assert_eq!(total, 3 * PER_SENDER, "the actors' own counts, state carried across moves");
    let report = history().check(Expectation::reliable_ordered());
    pauses.sort();
    println!(
        "migration under load: {} messages from 3 senders to {ACTORS} actors in {sending:?} with 20 moves among 4 nodes; \
         {} received, lost {}, duplicated {}, reordered {}; move time p50 {:?} p99 {:?} max {:?}",
        report.sent,
        report.received,
        report.lost.len(),
        report.duplicated.len(),
        report.reordered.len(),
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99),
        pauses.last().expect("moves"),
    );
    assert_eq!(report.sent, 3 * PER_SENDER as usize);
    assert!(report.lost.is_empty(), "lost: {:?}", &report.lost[..report.lost.len().min(10)]);
    assert!(report.duplicated.is_empty(), "duplicated: {:?}", &report.duplicated[..report.duplicated.len().min(10)]);
    assert!(report.reordered.is_empty(), "reordered: {:?}", &report.reordered[..report.reordered.len().min(10)]);
    h.shutdown().await;
}
