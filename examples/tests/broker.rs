//! The distributed broker on in-process clusters over real TCP: subscribers on several
//! nodes, one copy per subscribing node on the wire, subscriptions that follow membership
//! and end with their actor, named topics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::testkit::faults::LinkConditions;
use actix_cluster::testkit::harness::ClusterTestHarness;
use actix_cluster::testkit::history::{Expectation, History, MustArrive};
use actix_cluster::DeliveryConfig;

const DEADLINE: Duration = Duration::from_secs(20);

/// A published message.
#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Price {
    cents: u64,
}

/// Counts the prices it gets; subscribes when it starts (to `Price`, or to a named topic).
struct Watcher {
    system: ClusterSystem,
    topic: Option<&'static str>,
    seen: Arc<AtomicU64>,
}

impl Actor for Watcher {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.system.broker().subscribe::<Price, Self>(ctx, self.topic);
    }
}

impl Handler<Price> for Watcher {
    type Result = ();
    fn handle(&mut self, m: Price, _: &mut Context<Self>) {
        self.seen.fetch_add(m.cents.min(1), Ordering::Relaxed);
    }
}

/// Stops the watcher.
struct Quit;
impl Message for Quit {
    type Result = ();
}
impl Handler<Quit> for Watcher {
    type Result = ();
    fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

fn watch(h: &ClusterTestHarness, node: usize, topic: Option<&'static str>) -> (Addr<Watcher>, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let addr = Watcher { system: h.node(node).clone(), topic, seen: seen.clone() }.start();
    (addr, seen)
}

/// Waits until node `from` sees exactly `nodes` as `Price`'s subscribers (on `topic`).
async fn until_subscribed(h: &ClusterTestHarness, from: usize, topic: Option<&str>, nodes: &[&str]) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = h.node(from).broker().subscribed_nodes::<Price>(topic).await;
        if now == nodes {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "node {from} sees subscribers {now:?}, not {nodes:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn until_count(seen: &AtomicU64, n: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.load(Ordering::Relaxed) < n {
        assert!(tokio::time::Instant::now() < deadline, "{what}: {} of {n}", seen.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn a_publish_reaches_every_subscriber_with_one_copy_per_node() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let (a1, seen_a1) = watch(&h, 1, None);
    let (_a2, seen_a2) = watch(&h, 1, None);
    let (_b, seen_b) = watch(&h, 2, None);
    until_subscribed(&h, 0, None, &["node-2", "node-3"]).await;
    for _ in 0..100 {
        assert_eq!(h.node(0).publish(Price { cents: 1 }).await.expect("publish"), 2, "two nodes");
    }
    for (seen, who) in [(&seen_a1, "a1"), (&seen_a2, "a2"), (&seen_b, "b")] {
        until_count(seen, 100, who).await;
    }
    let stats = h.node(0).broker().stats().await;
    assert_eq!((stats.published, stats.sent), (100, 200), "one copy per subscribing node, not per subscriber");
    let there = h.node(1).broker().stats().await;
    assert_eq!((there.subscribers, there.delivered), (2, 200), "fanned out on arrival");
    // A subscriber that stops leaves; the node stays subscribed while another one is there.
    a1.send(Quit).await.expect("quit");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while h.node(1).broker().stats().await.subscribers != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the stopped subscriber is still there");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.node(0).publish(Price { cents: 1 }).await.expect("publish");
    until_count(&seen_a2, 101, "a2").await;
    until_count(&seen_b, 101, "b").await;
    assert_eq!(seen_a1.load(Ordering::Relaxed), 100, "the stopped one got nothing more");
    // A publisher with subscribers of its own hands them the message too.
    let (_c, seen_c) = watch(&h, 0, None);
    until_subscribed(&h, 0, None, &["node-1", "node-2", "node-3"]).await;
    assert_eq!(h.node(0).publish(Price { cents: 1 }).await.expect("publish"), 3);
    until_count(&seen_c, 1, "c").await;
    h.shutdown().await;
}

#[actix_rt::test]
async fn subscriptions_follow_membership() {
    let mut h = ClusterTestHarness::start(3).await.expect("harness");
    let (_a, _) = watch(&h, 1, None);
    let (_b, _) = watch(&h, 2, None);
    until_subscribed(&h, 0, None, &["node-2", "node-3"]).await;
    // A node that dies takes its subscribers with it.
    h.kill(2);
    until_subscribed(&h, 0, None, &["node-2"]).await;
    // A node that (re)joins learns the subscriptions there are, and announces its own.
    h.restart(2).await.expect("restart");
    until_subscribed(&h, 2, None, &["node-2"]).await;
    let (_b2, seen_b2) = watch(&h, 2, None);
    until_subscribed(&h, 0, None, &["node-2", "node-3"]).await;
    h.node(0).publish(Price { cents: 1 }).await.expect("publish");
    until_count(&seen_b2, 1, "the new subscriber").await;
    h.shutdown().await;
}

#[actix_rt::test]
async fn named_topics_are_apart_from_the_type_topic() {
    let h = ClusterTestHarness::start(2).await.expect("harness");
    let (_eu, seen_eu) = watch(&h, 1, Some("eu"));
    let (_all, seen_all) = watch(&h, 1, None);
    until_subscribed(&h, 0, Some("eu"), &["node-2"]).await;
    until_subscribed(&h, 0, None, &["node-2"]).await;
    h.node(0).broker().publish_to("eu", Price { cents: 1 }).await.expect("publish");
    h.node(0).broker().publish_to("us", Price { cents: 1 }).await.expect("publish to nobody");
    until_count(&seen_eu, 1, "eu").await;
    h.node(0).publish(Price { cents: 1 }).await.expect("publish");
    until_count(&seen_all, 1, "all").await;
    // Each got only its own topic's.
    let barrier = h.node(0).broker().stats().await;
    assert_eq!(barrier.published, 3);
    until_count(&seen_eu, 1, "eu").await;
    assert_eq!((seen_eu.load(Ordering::Relaxed), seen_all.load(Ordering::Relaxed)), (1, 1));
    h.shutdown().await;
}

/// A published message with a history id.
#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Tick {
    id: u64,
}

/// Records every tick it gets in its history.
struct Recording {
    system: ClusterSystem,
    topic: &'static str,
    history: History,
}

impl Actor for Recording {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.system.broker().subscribe::<Tick, Self>(ctx, Some(self.topic));
    }
}

impl Handler<Tick> for Recording {
    type Result = ();
    fn handle(&mut self, m: Tick, _: &mut Context<Self>) {
        self.history.received(m.id);
    }
}

async fn until_subscribed_to(h: &ClusterTestHarness, from: usize, topic: &str, nodes: &[&str]) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = h.node(from).broker().subscribed_nodes::<Tick>(Some(topic)).await;
        if now == nodes {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "node {from} sees subscribers {now:?}, not {nodes:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn guaranteed_publishes_reach_every_subscriber_through_loss_and_a_partition() {
    let h = ClusterTestHarness::builder()
        .nodes(3)
        .seed(5)
        .configure(|_, c| {
            c.delivery(DeliveryConfig {
                resend_after: Duration::from_millis(150),
                gap_resend_after: Duration::from_millis(50),
                ..DeliveryConfig::default()
            })
        })
        .start()
        .await
        .expect("harness");
    let cases = [("once", DeliveryGuarantee::ExactlyOnce), ("fifo", DeliveryGuarantee::Ordered)];
    // Per topic: two subscribers on node-2, one on node-3, each with its own history.
    let mut subscribers = Vec::new();
    for (topic, _) in cases {
        for (node, name) in [(1, "a"), (1, "b"), (2, "c")] {
            let history = History::new();
            let addr = Recording { system: h.node(node).clone(), topic, history: history.clone() }.start();
            subscribers.push((topic, name, h.name(node).to_owned(), history, addr));
        }
        until_subscribed_to(&h, 0, topic, &["node-2", "node-3"]).await;
    }
    let bad = LinkConditions::clear()
        .with_loss(0.05)
        .with_duplicates(0.05)
        .with_reordering(0.05)
        .with_latency(Duration::from_millis(1), Duration::from_millis(2));
    for to in [1, 2] {
        h.set_link(0, to, bad.clone());
        h.set_link(to, 0, bad.clone());
    }
    const N: u64 = 300;
    let mut receipts = Vec::new();
    for id in 0..N {
        if id == N / 2 {
            h.partition(&[0], &[2]);
        }
        for (topic, guarantee) in cases {
            for s in subscribers.iter().filter(|s| s.0 == topic) {
                s.3.sent(topic, id);
            }
            let r =
                h.node(0).broker().publish_to_with_guarantee(topic, Tick { id }, guarantee).await.expect("accepted");
            assert_eq!(r.sent(), 2);
            receipts.push((topic, id, r));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.heal();
    for to in [1, 2] {
        h.set_link(0, to, bad.clone());
        h.set_link(to, 0, bad.clone());
    }
    for (topic, id, r) in receipts {
        let outcome = r.settled().await;
        assert!(outcome.failed.is_empty() && outcome.gone.is_empty(), "{topic} {id}: {outcome:?}");
        for s in subscribers.iter().filter(|s| s.0 == topic && outcome.delivered.contains(&s.2)) {
            s.3.acked(id);
        }
    }
    let stats = h.faults().stats(h.name(0), h.name(2));
    println!("guaranteed publishes: 2 x {N} to 3 subscribers on 2 nodes; frames node-1 -> node-3 {stats:?}");
    assert!(stats.dropped > 0, "the faults hit");
    for (topic, name, _, history, _) in &subscribers {
        let ordered = *topic == "fifo";
        let report = history.check(Expectation { must_arrive: MustArrive::Everything, no_duplicates: true, ordered });
        assert!(report.is_clean(), "{topic}/{name}: {report}");
    }
    h.shutdown().await;
}

/// A question or its answer, published to the "qa" topic.
#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct Qa {
    answer: bool,
    n: u64,
}

/// Answers every question it gets by publishing the answer (causally after it).
struct Responder {
    system: ClusterSystem,
}

impl Actor for Responder {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.system.broker().subscribe::<Qa, Self>(ctx, Some("qa"));
    }
}

impl Handler<Qa> for Responder {
    type Result = ();
    fn handle(&mut self, m: Qa, _: &mut Context<Self>) {
        if !m.answer {
            let system = self.system.clone();
            actix_cluster::rt::spawn(async move {
                let answer = Qa { answer: true, n: m.n };
                let r = system.broker().publish_to_with_guarantee("qa", answer, DeliveryGuarantee::Causal).await;
                r.expect("answer published");
            });
        }
    }
}

/// Keeps what it handles, in order.
struct Log {
    system: ClusterSystem,
    seen: Arc<std::sync::Mutex<Vec<Qa>>>,
}

impl Actor for Log {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.system.broker().subscribe::<Qa, Self>(ctx, Some("qa"));
    }
}

impl Handler<Qa> for Log {
    type Result = ();
    fn handle(&mut self, m: Qa, _: &mut Context<Self>) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).push(m);
    }
}

async fn qa_round(guarantee: DeliveryGuarantee, n: u64, seed: u64) -> (usize, usize) {
    let h = ClusterTestHarness::builder()
        .nodes(3)
        .seed(seed)
        .configure(|_, c| {
            c.delivery(DeliveryConfig {
                resend_after: Duration::from_millis(150),
                gap_resend_after: Duration::from_millis(50),
                ..DeliveryConfig::default()
            })
        })
        .start()
        .await
        .expect("harness");
    let _responder = Responder { system: h.node(1).clone() }.start();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let _log = Log { system: h.node(2).clone(), seen: seen.clone() }.start();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for from in 0..3 {
        while h.node(from).broker().subscribed_nodes::<Qa>(Some("qa")).await.len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "subscriptions not known");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Questions reach node-3 slowly, answers (from node-2) quickly; frames are lost and
    // duplicated on every link.
    let slow =
        LinkConditions::clear().with_latency(Duration::from_millis(60), Duration::from_millis(40)).with_loss(0.05);
    let fast = LinkConditions::clear().with_loss(0.05).with_duplicates(0.05).with_reordering(0.05);
    h.set_link(0, 2, slow);
    for (x, y) in [(0, 1), (1, 0), (1, 2), (2, 1), (2, 0)] {
        h.set_link(x, y, fast.clone());
    }
    for i in 0..n {
        h.node(0)
            .broker()
            .publish_to_with_guarantee("qa", Qa { answer: false, n: i }, guarantee)
            .await
            .expect("publish");
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.lock().unwrap_or_else(|e| e.into_inner()).len() < 2 * n as usize {
        assert!(tokio::time::Instant::now() < deadline, "not everything arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let at = |m: Qa| seen.iter().position(|s| *s == m).expect("seen");
    let violations = (0..n).filter(|i| at(Qa { answer: true, n: *i }) < at(Qa { answer: false, n: *i })).count();
    let distinct: std::collections::BTreeSet<(bool, u64)> = seen.iter().map(|m| (m.answer, m.n)).collect();
    h.shutdown().await;
    (violations, seen.len() - distinct.len())
}

#[actix_rt::test]
async fn causal_publishes_are_handled_after_what_they_answer() {
    // Without causal delivery the answers overtake the questions...
    let (overtaken, _) = qa_round(DeliveryGuarantee::Ordered, 40, 21).await;
    // ...with it, never, and each arrives once.
    let (violations, duplicates) = qa_round(DeliveryGuarantee::Causal, 40, 21).await;
    println!("questions and answers: {overtaken} of 40 answers overtook their question when ordered only, {violations} when causal");
    assert!(overtaken > 0, "the test's links make answers overtake questions");
    assert_eq!((violations, duplicates), (0, 0));
}
