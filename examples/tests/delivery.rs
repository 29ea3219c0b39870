//! Guaranteed delivery on in-process clusters over real TCP: receipts, exactly-once by id,
//! order across moves, expiry, and the history checker's verdict under loss, duplication,
//! reordering and partitions.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::testkit::faults::LinkConditions;
use actix_cluster::testkit::harness::ClusterTestHarness;
use actix_cluster::testkit::history::{Expectation, History, MustArrive};
use actix_cluster::{
    Delivery, DeliveryConfig, DeliveryError, DeliveryFailure, DeliveryGuarantee, DeliveryStatus, MessageId, Receipt,
    TxnOutcome,
};

/// The histories, one per test scope: receivers record into the one their message names.
fn histories() -> &'static Mutex<BTreeMap<String, History>> {
    static H: OnceLock<Mutex<BTreeMap<String, History>>> = OnceLock::new();
    H.get_or_init(Default::default)
}

fn history(scope: &str) -> History {
    histories().lock().unwrap_or_else(|e| e.into_inner()).entry(scope.to_owned()).or_default().clone()
}

/// A message with a history id.
#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Note {
    scope: String,
    id: u64,
    /// Extra bytes, to tell payloads apart.
    pad: u32,
}

/// How many notes the actor handled.
#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Count;

/// Records every note it handles.
#[distributed_actor(messages(Note, Count))]
#[derive(Default, Serialize, Deserialize)]
struct Recorder {
    handled: u64,
}

impl Handler<Note> for Recorder {
    type Result = u64;
    fn handle(&mut self, m: Note, _: &mut Context<Self>) -> u64 {
        history(&m.scope).received(m.id);
        self.handled += 1;
        self.handled
    }
}

impl Handler<Count> for Recorder {
    type Result = u64;
    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> u64 {
        self.handled
    }
}

fn note(scope: &str, id: u64) -> Note {
    Note { scope: scope.to_owned(), id, pad: 0 }
}

/// Fast timers, so that losses are repaired quickly.
fn quick() -> DeliveryConfig {
    DeliveryConfig {
        resend_after: Duration::from_millis(150),
        gap_resend_after: Duration::from_millis(50),
        ..DeliveryConfig::default()
    }
}

async fn remote_recorder(h: &ClusterTestHarness, on: usize, from: usize, name: &str) -> ActorRef<Recorder> {
    let local = h.node(on).spawn_local(Recorder::default());
    h.node(on).registry().register(name, &local).await.expect("register");
    h.node(from).registry().lookup::<Recorder>(name).await.expect("lookup").expect("found")
}

#[actix_rt::test]
async fn receipts_say_when_the_handler_ran_and_asks_get_their_reply() {
    let h = ClusterTestHarness::start(2).await.expect("harness");
    let target = remote_recorder(&h, 1, 0, "basic").await;
    assert!(!target.is_local());
    let hist = history("basic");
    for id in 0..202 {
        hist.sent("basic", id);
    }
    let mut receipts = Vec::new();
    for id in 0..200 {
        receipts.push(target.tell_with(note("basic", id), DeliveryGuarantee::AtLeastOnce).await.expect("accepted"));
    }
    for mut r in receipts {
        assert_eq!(r.settled().await, DeliveryStatus::Delivered);
        r.await.expect("a tell's receipt gives ()");
    }
    let reply = target.send_with(note("basic", 200), DeliveryGuarantee::ExactlyOnce).await.expect("accepted");
    assert_eq!(reply.await.expect("delivered"), 201, "the ask's reply: 201 handled");
    let ordered = target.send_with(Count, DeliveryGuarantee::Ordered).await.expect("accepted");
    assert_eq!(ordered.await.expect("delivered"), 201);
    // At-most-once goes the old way: sent, never confirmed.
    let mut once = target.tell_with(note("basic", 201), DeliveryGuarantee::AtMostOnce).await.expect("sent");
    assert_eq!(once.settled().await, DeliveryStatus::Sent);
    // A local target is delivered in-process, with a receipt all the same.
    let local = h.node(1).registry().lookup::<Recorder>("basic").await.expect("lookup").expect("found");
    assert!(local.is_local());
    let r = local.send_with(Count, DeliveryGuarantee::AtLeastOnce).await.expect("accepted");
    assert!(r.await.expect("delivered") >= 201);
    let report =
        history("basic").check(Expectation { must_arrive: MustArrive::Everything, ..Expectation::at_least_once() });
    assert!(report.lost.is_empty() && report.unexpected.is_empty(), "{report}");
    assert_eq!(h.node(0).delivery().stats().await.unconfirmed, 0);
    h.shutdown().await;
}

#[actix_rt::test]
async fn an_id_is_handled_once_and_reused_with_another_payload_it_is_refused() {
    let h = ClusterTestHarness::start(2).await.expect("harness");
    let target = remote_recorder(&h, 1, 0, "ids").await;
    let once = || Delivery::from(DeliveryGuarantee::ExactlyOnce).id("order-42");
    let first = target.send_with(note("ids", 1), once()).await.expect("accepted");
    assert_eq!(first.id(), MessageId::from_key("order-42"));
    assert_eq!(first.await.expect("delivered"), 1);
    // The same message again (a retry after a sender restart, say): not handled again, and
    // the ask gets the first reply.
    let again = target.send_with(note("ids", 1), once()).await.expect("accepted");
    assert_eq!(again.await.expect("answered from the window"), 1);
    assert_eq!(target.send(Count).await.expect("count"), 1, "handled once");
    // The same id with another payload is an error, not a silent drop.
    let mut other = note("ids", 1);
    other.pad = 7;
    let reused = target.send_with(other, once()).await.expect("accepted");
    let err = reused.await.expect_err("refused");
    assert!(matches!(err, DeliveryError::Failed(DeliveryFailure::IdReused(_))), "{err}");
    assert_eq!(h.node(1).delivery().stats().await.duplicates, 1);
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_message_not_confirmed_by_its_deadline_expires() {
    let h = ClusterTestHarness::start(2).await.expect("harness");
    let target = remote_recorder(&h, 1, 0, "late").await;
    h.partition_one_way(0, 1);
    let d = Delivery::from(DeliveryGuarantee::AtLeastOnce).expire_after(Duration::from_millis(300));
    let r = target.tell_with(note("late", 1), d).await.expect("accepted");
    assert_eq!(r.await, Err(DeliveryError::Expired));
    h.heal();
    h.shutdown().await;
}

/// Sends `n` notes to `target` with `guarantee` (ids from `first`), recording each.
async fn send_some(
    target: &ActorRef<Recorder>,
    scope: &str,
    guarantee: DeliveryGuarantee,
    ids: std::ops::Range<u64>,
) -> Vec<(u64, Receipt<()>)> {
    let hist = history(scope);
    let mut receipts = Vec::new();
    for id in ids {
        hist.sent(scope, id);
        let r = target.tell_with(note(scope, id), guarantee).await.expect("accepted");
        receipts.push((id, r));
        // Sent over time, not in one burst: many frames, so that the faults hit many.
        tokio::task::yield_now().await;
    }
    receipts
}

/// Waits for every receipt, records the acknowledged ones; how many were delivered.
async fn settle_all(scope: &str, receipts: Vec<(u64, Receipt<()>)>) -> usize {
    let hist = history(scope);
    let mut delivered = 0;
    for (id, mut r) in receipts {
        if r.settled().await == DeliveryStatus::Delivered {
            hist.acked(id);
            delivered += 1;
        }
    }
    delivered
}

async fn send_all(target: &ActorRef<Recorder>, scope: &str, guarantee: DeliveryGuarantee, first: u64, n: u64) -> usize {
    let receipts = send_some(target, scope, guarantee, first..first + n).await;
    settle_all(scope, receipts).await
}

/// Distinct ids `scope`'s receivers handled so far.
fn received(scope: &str) -> usize {
    let events = history(scope).events();
    events.iter().filter(|e| matches!(e, actix_cluster::testkit::history::Event::Received { .. })).count()
}

#[actix_rt::test]
async fn under_loss_duplication_reordering_and_a_partition_nothing_acknowledged_is_lost() {
    let h = ClusterTestHarness::builder()
        .nodes(3)
        .seed(11)
        .configure(|_, c| c.delivery(quick()))
        .start()
        .await
        .expect("harness");
    let cases = [
        ("chaos-least", DeliveryGuarantee::AtLeastOnce),
        ("chaos-exactly", DeliveryGuarantee::ExactlyOnce),
        ("chaos-ordered", DeliveryGuarantee::Ordered),
    ];
    let mut targets = Vec::new();
    for (scope, _) in cases {
        targets.push(remote_recorder(&h, 1, 0, scope).await);
    }
    let bad = LinkConditions::clear()
        .with_loss(0.05)
        .with_duplicates(0.05)
        .with_reordering(0.05)
        .with_latency(Duration::from_millis(1), Duration::from_millis(2));
    h.set_link(0, 1, bad.clone());
    h.set_link(1, 0, bad.clone());
    const N: u64 = 600;
    // Half before the partition, half while node-1 and node-2 cannot reach each other.
    let mut pending = Vec::new();
    for ((scope, g), t) in cases.iter().zip(&targets) {
        pending.push(send_some(t, scope, *g, 0..N / 2).await);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cases.iter().any(|(scope, _)| received(scope) < 50) {
        assert!(tokio::time::Instant::now() < deadline, "nothing arrives");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.partition(&[0], &[1]);
    for (i, ((scope, g), t)) in cases.iter().zip(&targets).enumerate() {
        pending[i].extend(send_some(t, scope, *g, N / 2..N).await);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.heal();
    h.set_link(0, 1, bad.clone());
    h.set_link(1, 0, bad);
    let mut confirmed = Vec::new();
    for ((scope, _), receipts) in cases.iter().zip(pending) {
        confirmed.push(settle_all(scope, receipts).await);
    }
    let there = h.faults().stats(h.name(0), h.name(1));
    let back = h.faults().stats(h.name(1), h.name(0));
    let stats = h.node(0).delivery().stats().await;
    println!(
        "delivery under chaos: {confirmed:?} of {N} confirmed; frames node-1 -> node-2 {there:?}, back {back:?}; \
         sender {stats:?}; receiver {:?}",
        h.node(1).delivery().stats().await
    );
    assert_eq!(confirmed, vec![N as usize; 3], "everything confirmed once the faults end");
    assert!(there.dropped > 0 && there.duplicated > 0 && there.reordered > 0, "the faults hit: {there:?}");
    let least = history("chaos-least").check(Expectation::at_least_once());
    assert!(least.is_clean(), "at-least-once: {least}");
    let exactly = history("chaos-exactly").check(Expectation {
        must_arrive: MustArrive::Acknowledged,
        no_duplicates: true,
        ordered: false,
    });
    assert!(exactly.is_clean(), "exactly-once: {exactly}");
    let ordered = history("chaos-ordered").check(Expectation {
        must_arrive: MustArrive::Acknowledged,
        no_duplicates: true,
        ordered: true,
    });
    assert!(ordered.is_clean(), "ordered: {ordered}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn ordered_messages_follow_a_moving_actor_in_order() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let local = h.node(1).spawn_local(Recorder::default());
    h.node(1).registry().register("mover", &local).await.expect("register");
    let target = h.node(0).registry().lookup::<Recorder>("mover").await.expect("lookup").expect("found");
    const N: u64 = 1_500;
    let moves = async {
        let mut current = local.clone();
        for k in 0..4 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let here = current.location().expect("located").node;
            let from = h.names().iter().position(|n| *n == here).expect("a node");
            let to = h.name(1 + from % 2).to_owned();
            current = h.node(from).migrate(&current, &to).await.unwrap_or_else(|e| panic!("move {k}: {e}"));
        }
    };
    let (confirmed, ()) = futures_util::join!(send_all(&target, "mover", DeliveryGuarantee::Ordered, 0, N), moves);
    assert_eq!(confirmed, N as usize);
    let report = history("mover").check(Expectation::reliable_ordered());
    assert!(report.is_clean(), "{report}");
    let stats = h.node(0).delivery().stats().await;
    println!("ordered across 4 moves: {N} confirmed, {} sent again elsewhere", stats.rerouted);
    h.shutdown().await;
}

/// A recorder that is re-created on a surviving node when its node is lost.
#[distributed_actor(messages(Note, Count), recovery = "restart")]
#[derive(Default, Serialize, Deserialize)]
struct Durable {
    handled: u64,
}

impl Handler<Note> for Durable {
    type Result = u64;
    fn handle(&mut self, m: Note, _: &mut Context<Self>) -> u64 {
        history(&m.scope).received(m.id);
        self.handled += 1;
        self.handled
    }
}

impl Handler<Count> for Durable {
    type Result = u64;
    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> u64 {
        self.handled
    }
}

#[actix_rt::test]
async fn what_a_killed_node_had_not_confirmed_reaches_the_actor_where_it_is_recovered() {
    let mut h =
        ClusterTestHarness::builder().nodes(3).configure(|_, c| c.delivery(quick())).start().await.expect("harness");
    let scope = "killed";
    h.node(2).spawn(Durable::default()).placement(Placement::Local).name("durable").await.expect("spawn");
    let target = h.node(0).registry().lookup::<Durable>("durable").await.expect("lookup").expect("found");
    let hist = history(scope);
    let mut receipts = Vec::new();
    for id in 0..600u64 {
        hist.sent(scope, id);
        receipts.push((id, target.tell_with(note(scope, id), DeliveryGuarantee::AtLeastOnce).await.expect("accepted")));
        if id == 300 {
            // Some handled, the rest on their way: the receiving node dies without a word.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while received(scope) < 100 {
                assert!(tokio::time::Instant::now() < deadline, "nothing arrives");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            h.kill(2);
        }
    }
    let confirmed = settle_all(scope, receipts).await;
    let stats = h.node(0).delivery().stats().await;
    let report = hist.check(Expectation::at_least_once());
    println!(
        "receiver killed mid-stream: {confirmed} of 600 confirmed, {} sent again elsewhere; {report}",
        stats.rerouted
    );
    assert_eq!(confirmed, 600, "every message confirmed, by the recovered actor for those its first node had not");
    assert!(report.is_clean(), "{report}");
    assert!(stats.rerouted > 0, "some went to the recovered actor");
    let recovered = h.node(0).registry().lookup::<Durable>("durable").await.expect("lookup").expect("found");
    assert_ne!(recovered.location().expect("located").node, h.name(2), "runs on a survivor");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_restarted_sender_sends_again_what_its_durable_outbox_kept_and_the_receiver_handles_it_once() {
    let dir = std::env::temp_dir().join(format!("delivery-outbox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("node-1.redb");
    let config = {
        let path = path.clone();
        move |i: usize, c: actix_cluster::ClusterConfigBuilder| {
            let outbox_path = (i == 0).then(|| path.clone());
            c.delivery(DeliveryConfig { outbox_path, ..quick() })
        }
    };
    let mut h = ClusterTestHarness::builder().nodes(2).configure(config).start().await.expect("harness");
    let scope = "durable";
    let target = remote_recorder(&h, 1, 0, scope).await;
    // node-2 handles what it gets, but its confirmations never reach node-1.
    h.partition_one_way(1, 0);
    let hist = history(scope);
    for id in 0..200 {
        hist.sent(scope, id);
        target.tell_with(note(scope, id), DeliveryGuarantee::ExactlyOnce).await.expect("kept on disk");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while received(scope) < 200 {
        assert!(tokio::time::Instant::now() < deadline, "node-2 handled {} of 200", received(scope));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.node(0).delivery().stats().await.unconfirmed, 200, "none confirmed");
    // The sender dies at once with all 200 unconfirmed (nothing runs between the heal and
    // the kill), and comes back with its outbox file.
    h.heal();
    h.restart(0).await.expect("restart");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = h.node(0).delivery().stats().await;
        if stats.resumed == 200 && stats.unconfirmed == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the restarted sender: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let receiver = h.node(1).delivery().stats().await;
    let report = hist.check(Expectation { must_arrive: MustArrive::Everything, no_duplicates: true, ordered: false });
    println!(
        "durable outbox: 200 sent again after the sender's restart, {} recognised as handled; {report}",
        receiver.duplicates
    );
    assert!(report.is_clean(), "{report}");
    assert_eq!(receiver.duplicates, 200, "every copy recognised by its id");
    // Nothing is left on disk: a second restart sends nothing.
    h.restart(0).await.expect("restart again");
    assert_eq!(h.node(0).delivery().stats().await.resumed, 0);
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Receives of `id` in `scope` so far.
fn times_received(scope: &str, id: u64) -> usize {
    let events = history(scope).events();
    events
        .iter()
        .filter(|e| matches!(e, actix_cluster::testkit::history::Event::Received { id: r } if *r == id))
        .count()
}

#[actix_rt::test]
async fn a_transaction_reaches_all_its_targets_or_none() {
    let h = ClusterTestHarness::builder()
        .nodes(3)
        .configure(|_, c| c.delivery(DeliveryConfig { txn_timeout: Duration::from_millis(500), ..quick() }))
        .start()
        .await
        .expect("harness");
    let a = remote_recorder(&h, 1, 0, "txn-a").await;
    let b = remote_recorder(&h, 2, 0, "txn-b").await;
    let (sa, sb) = ("txn-a", "txn-b");
    // Both targets take it: committed, each handles it once.
    let outcome =
        h.node(0).delivery().transaction().tell(&a, note(sa, 1)).tell(&b, note(sb, 1)).commit().await.expect("commit");
    assert_eq!(outcome, TxnOutcome::Committed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while times_received(sa, 1) + times_received(sb, 1) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the committed messages were not handled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A target that no longer runs makes its node vote no: nothing is delivered anywhere.
    let gone = remote_recorder(&h, 2, 0, "txn-gone").await;
    gone.stop().await.expect("stop");
    let outcome = h
        .node(0)
        .delivery()
        .transaction()
        .tell(&a, note(sa, 2))
        .tell(&gone, note(sb, 2))
        .commit()
        .await
        .expect("commit");
    assert!(matches!(&outcome, TxnOutcome::Aborted(why) if why.contains("node-3")), "{outcome:?}");
    // A participant that cannot be reached: aborted when the votes do not all come.
    h.partition(&[0], &[2]);
    let outcome =
        h.node(0).delivery().transaction().tell(&a, note(sa, 3)).tell(&b, note(sb, 3)).commit().await.expect("commit");
    assert!(matches!(outcome, TxnOutcome::Aborted(_)), "{outcome:?}");
    h.heal();
    // Give the aborted ones every chance to show up (they must not): one more committed
    // transaction through the same streams, handled after them.
    let outcome =
        h.node(0).delivery().transaction().tell(&a, note(sa, 4)).tell(&b, note(sb, 4)).commit().await.expect("commit");
    assert_eq!(outcome, TxnOutcome::Committed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while times_received(sa, 4) + times_received(sb, 4) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the last committed messages were not handled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for id in [2, 3] {
        assert_eq!((times_received(sa, id), times_received(sb, id)), (0, 0), "aborted transaction {id} delivered");
    }
    // A single guaranteed tell can be transactional too.
    let r = a.tell_with(note(sa, 5), DeliveryGuarantee::Transactional).await.expect("accepted");
    r.await.expect("committed");
    h.shutdown().await;
}

#[actix_rt::test]
async fn under_loss_and_a_partition_no_transaction_is_delivered_in_part() {
    let h = ClusterTestHarness::builder()
        .nodes(3)
        .seed(3)
        .configure(|_, c| c.delivery(DeliveryConfig { txn_timeout: Duration::from_millis(400), ..quick() }))
        .start()
        .await
        .expect("harness");
    let a = remote_recorder(&h, 1, 0, "ptx-a").await;
    let b = remote_recorder(&h, 2, 0, "ptx-b").await;
    let bad = LinkConditions::clear()
        .with_loss(0.1)
        .with_duplicates(0.05)
        .with_reordering(0.05)
        .with_latency(Duration::from_millis(1), Duration::from_millis(3));
    for (x, y) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
        h.set_link(x, y, bad.clone());
    }
    let mut outcomes = Vec::new();
    for id in 0..60u64 {
        if id == 20 {
            h.partition(&[0], &[2]);
        }
        if id == 30 {
            h.heal();
            for (x, y) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
                h.set_link(x, y, bad.clone());
            }
        }
        let txn = h.node(0).delivery().transaction().tell(&a, note("ptx-a", id)).tell(&b, note("ptx-b", id));
        outcomes.push((id, txn.commit().await.expect("commit")));
    }
    h.heal();
    // Wait until every committed message was handled on both sides.
    let committed: Vec<u64> = outcomes.iter().filter(|(_, o)| *o == TxnOutcome::Committed).map(|(id, _)| *id).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while committed.iter().any(|id| times_received("ptx-a", *id) == 0 || times_received("ptx-b", *id) == 0) {
        assert!(tokio::time::Instant::now() < deadline, "committed transactions not handled everywhere");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut aborted, mut in_doubt) = (0, 0);
    for (id, outcome) in &outcomes {
        let got = (times_received("ptx-a", *id), times_received("ptx-b", *id));
        match outcome {
            TxnOutcome::Committed => assert_eq!(got, (1, 1), "committed {id}: handled once on each side"),
            TxnOutcome::Aborted(_) => {
                aborted += 1;
                assert_eq!(got, (0, 0), "aborted {id} was delivered somewhere");
            }
            TxnOutcome::InDoubt(_) => in_doubt += 1,
            _ => unreachable!(),
        }
    }
    println!(
        "transactions under loss and a partition: {} committed, {aborted} aborted, {in_doubt} in doubt, none partial",
        committed.len()
    );
    assert!(aborted > 0, "the partition aborted some");
    assert!(committed.len() > 30, "most committed");
    h.shutdown().await;
}

/// A question or its answer, for the causal test.
#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct Said {
    answer: bool,
    n: u64,
}

/// What the causal log handled, in order.
fn said() -> &'static Mutex<Vec<Said>> {
    static S: OnceLock<Mutex<Vec<Said>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// Keeps the order of what it is told.
#[distributed_actor(messages(Said))]
#[derive(Default, Serialize, Deserialize)]
struct SaidLog;

impl Handler<Said> for SaidLog {
    type Result = ();
    fn handle(&mut self, m: Said, _: &mut Context<Self>) {
        said().lock().unwrap_or_else(|e| e.into_inner()).push(m);
    }
}

/// Answers each question with a causal tell to the log, or passes it on to another
/// answerer (causal too).
#[distributed_actor(messages(Said))]
#[derive(Default, Serialize, Deserialize)]
struct Answering {
    #[serde(skip)]
    log: Option<ActorRef<SaidLog>>,
    #[serde(skip)]
    pass_to: Option<ActorRef<Answering>>,
}

impl Handler<Said> for Answering {
    type Result = ();
    fn handle(&mut self, m: Said, _: &mut Context<Self>) {
        let (log, pass_to) = (self.log.clone(), self.pass_to.clone());
        tokio::task::spawn_local(async move {
            if let Some(next) = pass_to {
                next.tell_with(m, DeliveryGuarantee::Causal).await.expect("accepted");
            } else if let Some(log) = log {
                let answer = Said { answer: true, n: m.n };
                log.tell_with(answer, DeliveryGuarantee::Causal).await.expect("accepted");
            }
        });
    }
}

#[actix_rt::test]
async fn a_causal_answer_waits_for_the_question_told_before_it() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    // node-3 runs the log. node-1 asks, and its messages to node-3 are slow: answers would
    // come first, from node-2 (even questions) or, passed on by node-2, from an answerer
    // next to the log on node-3 (odd ones: held back there as a local message).
    let log = h.node(2).spawn_local(SaidLog);
    h.node(2).registry().register("said-log", &log).await.expect("register");
    let harness = &h;
    let find_log = |i: usize| async move {
        let log = harness.node(i).registry().lookup::<SaidLog>("said-log").await.expect("lookup").expect("found");
        Some(log)
    };
    let local = h.node(2).spawn_local(Answering { log: find_log(2).await, pass_to: None });
    h.node(2).registry().register("answering-3", &local).await.expect("register");
    let answering_3 = h.node(1).registry().lookup::<Answering>("answering-3").await.expect("lookup");
    let remote = h.node(1).spawn_local(Answering { log: find_log(1).await, pass_to: None });
    h.node(1).registry().register("answering-2", &remote).await.expect("register");
    let passing = h.node(1).spawn_local(Answering { log: None, pass_to: answering_3 });
    h.node(1).registry().register("passing-2", &passing).await.expect("register");
    let registry = h.node(0).registry();
    let via_node_2 = registry.lookup::<Answering>("answering-2").await.expect("lookup").expect("found");
    let via_node_3 = registry.lookup::<Answering>("passing-2").await.expect("lookup").expect("found");
    let log = h.node(0).registry().lookup::<SaidLog>("said-log").await.expect("lookup").expect("found");
    h.set_link(0, 2, LinkConditions::clear().with_latency(Duration::from_millis(150), Duration::from_millis(150)));
    const N: u64 = 20;
    let mut receipts = Vec::new();
    for n in 0..N {
        let question = Said { answer: false, n };
        receipts.push(log.tell_with(question, DeliveryGuarantee::Causal).await.expect("accepted"));
        let answering = if n % 2 == 0 { &via_node_2 } else { &via_node_3 };
        receipts.push(answering.tell_with(question, DeliveryGuarantee::Causal).await.expect("accepted"));
    }
    for mut r in receipts {
        assert_eq!(r.settled().await, DeliveryStatus::Delivered);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while said().lock().unwrap_or_else(|e| e.into_inner()).len() < 2 * N as usize {
        assert!(tokio::time::Instant::now() < deadline, "not everything reached the log");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = said().lock().unwrap_or_else(|e| e.into_inner()).clone();
    for n in 0..N {
        let at = |answer| seen.iter().position(|s| *s == Said { answer, n }).expect("handled");
        assert!(at(false) < at(true), "answer {n} handled before its question: {seen:?}");
    }
    let stats = h.node(2).delivery().stats().await;
    assert_eq!(stats.causal_held, 0, "nothing left held back");
    assert_eq!(stats.causal_receivers, 2, "the log and the answerer next to it");
    // What the actors received is forgotten once they stop.
    log.stop().await.expect("stopped");
    local.stop().await.expect("stopped");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.node(2).delivery().stats().await.causal_receivers > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the stopped actors' causal state stays");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.shutdown().await;
}
