//! Blast radius, on real sockets: oversized messages and replies, limits a peer cannot
//! exceed (connections in their handshake, asks in flight, spawned actors, inbound rate),
//! validation of what peers say, consistent errors, and the cases that already held
//! (a crash under 1,000 asks, a slow handshake, random input). In every case a legitimate
//! peer keeps being served.

use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::{LimitsConfig, RemoteErrorKind};
use actix_cluster_runtime::ids::NodeId;
use actix_cluster_runtime::proto::wire::frame::{self, Frame, Hello, RejectReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Slow(u64);

#[cluster_message(result = "Vec<u8>")]
#[derive(Serialize, Deserialize)]
struct Blob(usize);

#[cluster_message(result = "usize")]
#[derive(Serialize, Deserialize)]
struct Bytes(Vec<u8>);

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Received;

/// Keeps the actor busy (one message at a time) for this many milliseconds.
#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Stall(u64);

#[distributed_actor(messages(Add, Slow, Blob, Bytes, Received, Stall))]
#[derive(Default, Serialize, Deserialize)]
struct Store {
    total: u64,
    received: u64,
    /// Filler that makes the spawn state as large as wanted.
    padding: Vec<u8>,
}

impl Handler<Add> for Store {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.total += msg.0;
        self.total
    }
}

impl Handler<Slow> for Store {
    type Result = ResponseActFuture<Self, u64>;
    fn handle(&mut self, msg: Slow, _: &mut Context<Self>) -> Self::Result {
        Box::pin(actix_cluster::rt::time::sleep(Duration::from_millis(msg.0)).into_actor(self).map(|(), a, _| a.total))
    }
}

impl Handler<Blob> for Store {
    type Result = Vec<u8>;
    fn handle(&mut self, msg: Blob, _: &mut Context<Self>) -> Vec<u8> {
        vec![7; msg.0]
    }
}

impl Handler<Bytes> for Store {
    type Result = usize;
    fn handle(&mut self, msg: Bytes, _: &mut Context<Self>) -> usize {
        self.received += 1;
        msg.0.len()
    }
}

impl Handler<Stall> for Store {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, msg: Stall, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(actix_cluster::rt::time::sleep(Duration::from_millis(msg.0)).into_actor(self)))
    }
}

impl Handler<Received> for Store {
    type Result = u64;
    fn handle(&mut self, _: Received, _: &mut Context<Self>) -> u64 {
        self.received
    }
}

const DEADLINE: Duration = Duration::from_secs(20);
const MAX_FRAME: usize = 64 * 1024;
const HANDSHAKE: Duration = Duration::from_secs(2);

fn config(name: &str, seeds: &[String], limits: LimitsConfig) -> ClusterConfig {
    ClusterConfig::new()
        .node_name(name)
        .bind("127.0.0.1:0")
        .seed_nodes(seeds.iter().cloned())
        .max_frame_size(MAX_FRAME)
        .probe_interval(Duration::from_millis(100))
        .heartbeat(Duration::from_millis(100), Duration::from_millis(1000))
        .handshake_timeout(HANDSHAKE)
        .request_timeout(Duration::from_secs(10))
        .limits(limits)
        .build()
        .expect("config")
}

/// Node `a` (with `limits`), and `b` and `legit` linked to it.
async fn trio(limits: LimitsConfig) -> (ClusterSystem, ClusterSystem, ClusterSystem) {
    let a = ClusterSystem::new("robust", config("node-a", &[], limits)).start().await.expect("a");
    let seeds = [a.local_addr().to_string()];
    let b = ClusterSystem::new("robust", config("node-b", &seeds, LimitsConfig::default())).start().await.expect("b");
    let legit =
        ClusterSystem::new("robust", config("legit", &seeds, LimitsConfig::default())).start().await.expect("l");
    for n in [&b, &legit] {
        n.wait_for_peers(&["node-a"], DEADLINE).await.expect("linked");
    }
    (a, b, legit)
}

/// Checks that `legit` is served by node-a: a fresh actor there answers asks.
async fn served(legit: &ClusterSystem) {
    let actor = legit.remote_actor::<Store>("node-a").await.expect("legit spawn");
    assert_eq!(actor.send(Add(3)).await.expect("legit ask"), 3);
    actor.stop().await.expect("legit stop");
}

/// True once the node closed `s` (end of stream or reset); false while it is open.
fn is_closed(s: &TcpStream) -> bool {
    match s.try_read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn shutdown(nodes: impl IntoIterator<Item = ClusterSystem>) {
    for n in nodes {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn oversized_messages_and_replies_fail_alone_and_the_link_keeps_serving() {
    let (a, b, legit) = trio(LimitsConfig::default()).await;
    let store = b.remote_actor::<Store>("node-a").await.expect("spawn");
    // An ask in flight on the same link while the oversized ones are refused.
    let in_flight = {
        let store = store.clone();
        actix_cluster::rt::spawn(async move { store.send(Slow(300)).await })
    };
    let big = vec![1u8; MAX_FRAME + 1];
    match store.send(Bytes(big.clone())).await {
        Err(ClusterError::TooLarge { size, max }) => assert!(size > MAX_FRAME && max == MAX_FRAME, "{size} {max}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(store.do_send(Bytes(big.clone())).map_err(|e| e.error), Err(ClusterError::TooLarge { .. })));
    assert!(matches!(store.tell(Bytes(big)).await, Err(ClusterError::TooLarge { .. })));
    let state = Store { padding: vec![0; MAX_FRAME], ..Store::default() };
    assert!(matches!(b.remote_actor_with("node-a", state).await, Err(ClusterError::TooLarge { .. })));
    // A reply above what b accepts is an error for that ask only.
    match store.send(Blob(MAX_FRAME + 10)).await {
        Err(ClusterError::Remote { error, .. }) => assert_eq!(error.kind, RemoteErrorKind::TooLarge, "{error}"),
        other => panic!("expected a TooLarge error reply, got {other:?}"),
    }
    assert_eq!(in_flight.await.expect("task").expect("the ask in flight completes"), 0);
    assert_eq!(store.send(Blob(100)).await.expect("a small reply").len(), 100);
    assert_eq!(store.send(Bytes(vec![1; MAX_FRAME / 2])).await.expect("within the limit"), MAX_FRAME / 2);
    assert!(b.peer("node-a").is_some(), "the link stayed up");
    served(&legit).await;
    shutdown([b, legit, a]).await;
}

#[actix_rt::test]
async fn asks_in_flight_from_one_peer_are_capped_and_others_are_served() {
    let limits = LimitsConfig { inbound_asks_per_peer: 4, ..LimitsConfig::default() };
    let (a, b, legit) = trio(limits).await;
    let store = b.remote_actor::<Store>("node-a").await.expect("spawn");
    let asks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            actix_cluster::rt::spawn(async move { store.send(Slow(500)).await })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for ask in asks {
        match ask.await.expect("task") {
            Ok(_) => ok += 1,
            Err(ClusterError::Overloaded { node, detail }) => {
                assert_eq!(node, "node-a");
                assert!(detail.contains("inbound_asks_per_peer"), "{detail}");
                refused += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, refused), (4, 6));
    assert_eq!(a.refusals().asks, 6);
    assert_eq!(store.send(Add(1)).await.expect("room again once answered"), 1);
    served(&legit).await;
    shutdown([b, legit, a]).await;
}

#[actix_rt::test]
async fn spawns_per_peer_are_capped_stop_frees_a_place_and_a_downed_spawner_loses_its_actors() {
    let limits = LimitsConfig { spawned_per_peer: 5, ..LimitsConfig::default() };
    let (a, b, legit) = trio(limits).await;
    let before = a.local_actor_count();
    let mut actors = Vec::new();
    for _ in 0..5 {
        actors.push(b.remote_actor::<Store>("node-a").await.expect("spawn"));
    }
    match b.remote_actor::<Store>("node-a").await {
        Err(ClusterError::Overloaded { detail, .. }) => assert!(detail.contains("max_spawned_per_peer"), "{detail}"),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert_eq!(a.refusals().spawns, 1);
    served(&legit).await; // another peer's spawns are counted apart
                          // Stopping one (remotely) frees its place; its handle then finds nothing.
    let stopped = actors.pop().expect("one");
    stopped.stop().await.expect("remote stop");
    wait_until("the stopped actor left the table", || a.local_actor_count() == before + 4).await;
    assert!(matches!(stopped.send(Add(1)).await, Err(ClusterError::ActorNotFound { .. })));
    assert!(matches!(stopped.stop().await, Err(ClusterError::ActorNotFound { .. })));
    actors.push(b.remote_actor::<Store>("node-a").await.expect("room again"));
    // A local actor stops through its handle too.
    let local = a.spawn_local(Store::default());
    local.stop().await.expect("local stop");
    assert!(matches!(local.send(Add(1)).await, Err(ClusterError::ActorStopped)));
    // The spawner crashes: once node-a marks it down, its actors there are stopped.
    assert_eq!(a.local_actor_count(), before + 5);
    b.kill();
    wait_until("node-a stopped the actors of the downed node", || a.local_actor_count() == before).await;
    served(&legit).await;
    shutdown([legit, a]).await;
}

#[actix_rt::test]
async fn connections_stuck_in_their_handshake_are_capped_per_address() {
    let limits = LimitsConfig { pending_handshakes_per_addr: 8, pending_handshakes: 64, ..LimitsConfig::default() };
    let (a, b, legit) = trio(limits).await;
    // 40 connections that never say hello: 8 are held until their deadline, the rest are
    // closed at once.
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(a.local_addr()).await.expect("connect"));
    }
    wait_until("the surplus was refused", || a.refusals().handshakes == 32).await;
    // A closed connection reads end-of-stream; an open one has nothing to read yet.
    let closed = |silent: &[TcpStream]| silent.iter().filter(|s| is_closed(s)).count();
    wait_until("the refused connections are closed", || closed(&silent) == 32).await;
    // Established links are not affected.
    let store = b.remote_actor::<Store>("node-a").await.expect("spawn during the flood");
    assert_eq!(store.send(Add(1)).await.expect("ask during the flood"), 1);
    served(&legit).await;
    assert_eq!(closed(&silent), 32, "the 8 within the limit wait for their handshake deadline");
    drop(silent);
    shutdown([b, legit, a]).await;
}

#[actix_rt::test]
async fn a_fast_peer_is_paced_to_the_inbound_rate_while_others_are_served() {
    let limits = LimitsConfig { inbound_bytes_per_sec: Some(64 * 1024), ..LimitsConfig::default() };
    let (a, b, legit) = trio(limits).await;
    let store = b.remote_actor::<Store>("node-a").await.expect("spawn");
    let started = tokio::time::Instant::now();
    // 256 KiB in 4 KiB tells: one second's worth passes at once, the rest at 64 KiB/s.
    for _ in 0..64 {
        store.tell(Bytes(vec![0; 4096])).await.expect("tell");
    }
    let last = store.send(Add(1)).await.expect("all delivered");
    assert_eq!(last, 1);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "paced: 256 KiB at 64 KiB/s took {took:?}");
    assert!(a.refusals().throttled > 0);
    served(&legit).await;
    shutdown([b, legit, a]).await;
}

/// A raw client's hello with the given name.
fn hello(name: &str) -> Hello {
    Hello::new("robust", NodeId(0x5eed), name, "127.0.0.1:1")
}

async fn reject_reason(node: &ClusterSystem, hello: Hello) -> RejectReason {
    let mut s = TcpStream::connect(node.local_addr()).await.expect("connect");
    s.write_all(&frame::encode(&Frame::Hello(Box::new(hello))).expect("encode")).await.expect("write");
    let mut len = [0u8; 4];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut len)).await.expect("answer").expect("len");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.expect("body");
    let Ok(Frame::Reject(reason)) = frame::decode(&body) else { panic!("expected a Reject") };
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest)).await.expect("closed after the reject");
    reason
}

#[actix_rt::test]
async fn names_peers_present_are_validated() {
    let (a, b, legit) = trio(LimitsConfig::default()).await;
    for bad in ["", "two words", "../../etc", &"n".repeat(2000)] {
        assert_eq!(reject_reason(&a, hello(bad)).await, RejectReason::InvalidNodeName, "{bad:?}");
    }
    let mut spaced = hello("raw");
    spaced.listen_addr = "not an address".into();
    assert_eq!(reject_reason(&a, spaced).await, RejectReason::InvalidAddress);
    assert_eq!(a.peers().len(), 2, "only the legitimate peers are linked");
    served(&legit).await;
    shutdown([b, legit, a]).await;
}

#[actix_rt::test]
async fn every_call_on_a_shut_down_node_fails_with_shutdown() {
    let (a, b, legit) = trio(LimitsConfig::default()).await;
    let remote = b.remote_actor::<Store>("node-a").await.expect("spawn");
    let local = b.spawn_local(Store::default());
    b.shutdown().await;
    assert!(matches!(remote.send(Add(1)).await, Err(ClusterError::Shutdown)));
    assert!(matches!(remote.do_send(Add(1)).map_err(|e| e.error), Err(ClusterError::Shutdown)));
    assert!(matches!(remote.tell(Add(1)).await, Err(ClusterError::Shutdown)));
    assert!(matches!(remote.stop().await, Err(ClusterError::Shutdown)));
    assert!(matches!(local.send(Add(1)).await, Err(ClusterError::Shutdown)));
    assert!(matches!(local.do_send(Add(1)).map_err(|e| e.error), Err(ClusterError::Shutdown)));
    assert!(matches!(b.remote_actor::<Store>("node-a").await, Err(ClusterError::Shutdown)));
    assert!(matches!(b.wait_for_peers(&["node-a"], DEADLINE).await, Err(ClusterError::Shutdown)));
    served(&legit).await;
    shutdown([legit, a]).await;
}

#[actix_rt::test]
async fn a_handle_to_a_restarted_node_says_so() {
    let a = ClusterSystem::new("robust", config("node-a", &[], LimitsConfig::default())).start().await.expect("a");
    let addr = a.local_addr();
    let b = ClusterSystem::new("robust", config("node-b", &[addr.to_string()], LimitsConfig::default()))
        .start()
        .await
        .expect("b");
    b.wait_for_peers(&["node-a"], DEADLINE).await.expect("linked");
    let old = b.remote_actor::<Store>("node-a").await.expect("spawn");
    let old_id = a.node_id();
    a.shutdown().await;
    // The same node comes back on the same address, as a new incarnation.
    let restarted = ClusterConfig::new()
        .node_name("node-a")
        .bind(addr.to_string())
        .max_frame_size(MAX_FRAME)
        .probe_interval(Duration::from_millis(100))
        .build()
        .expect("config");
    let a = ClusterSystem::new("robust", restarted).start().await.expect("restart");
    wait_until("node-b linked to the new incarnation", || b.peer("node-a").is_some_and(|p| p.id != old_id)).await;
    match old.send(Add(1)).await {
        Err(ClusterError::NodeRestarted { node }) => assert_eq!(node, "node-a"),
        other => panic!("expected NodeRestarted, got {other:?}"),
    }
    assert!(matches!(old.do_send(Add(1)).map_err(|e| e.error), Err(ClusterError::NodeRestarted { .. })));
    shutdown([b, a]).await;
}

#[actix_rt::test]
async fn held_up_a_crash_under_a_thousand_asks_a_slow_handshake_and_random_input() {
    let (a, b, legit) = trio(LimitsConfig::default()).await;
    // A thousand asks in flight to a node that crashes: every one fails with LinkDown, fast.
    let victim = ClusterSystem::new("robust", config("victim", &[a.local_addr().to_string()], LimitsConfig::default()))
        .start()
        .await
        .expect("victim");
    b.wait_for_peers(&["victim"], DEADLINE).await.expect("b learns the victim through membership");
    let store = b.remote_actor::<Store>("victim").await.expect("spawn on victim");
    let sent = std::rc::Rc::new(std::cell::Cell::new(0));
    let asks: Vec<_> = (0..1000)
        .map(|_| {
            let (store, sent) = (store.clone(), sent.clone());
            actix_cluster::rt::spawn(async move {
                // Counted in the same poll that queues the ask.
                sent.set(sent.get() + 1);
                store.send(Slow(60_000)).await
            })
        })
        .collect();
    wait_until("every ask queued", || sent.get() == 1000).await;
    let killed = tokio::time::Instant::now();
    victim.kill();
    for ask in asks {
        assert!(matches!(ask.await.expect("task"), Err(ClusterError::LinkDown { .. })));
    }
    assert!(killed.elapsed() < Duration::from_secs(5), "all failed within {:?}", killed.elapsed());
    // A slow handshake, one byte of a hello every 100 ms, is closed at the deadline.
    let mut slow = TcpStream::connect(a.local_addr()).await.expect("connect");
    let hello_bytes = frame::encode(&Frame::Hello(Box::new(hello("slowloris")))).expect("encode");
    let started = tokio::time::Instant::now();
    let mut bytes = hello_bytes.iter().cycle();
    let closed_after = loop {
        if is_closed(&slow) {
            break started.elapsed();
        }
        let _ = slow.write_all(&[*bytes.next().expect("cycle")]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(started.elapsed() < DEADLINE, "the slow handshake was never closed");
    };
    assert!(closed_after >= HANDSHAKE && closed_after < HANDSHAKE * 3, "closed after {closed_after:?}");
    // Random input on fresh connections never takes the node down.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..200 {
        let mut s = TcpStream::connect(a.local_addr()).await.expect("connect");
        let len = (seed % 64) as usize + 1;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = s.write_all(&bytes).await;
    }
    served(&legit).await;
    let store = b.remote_actor::<Store>("node-a").await.expect("b still served");
    assert_eq!(store.send(Add(2)).await.expect("ask"), 2);
    shutdown([b, legit, a]).await;
}

#[actix_rt::test]
async fn tells_spread_over_many_actors_are_held_to_the_link_window_and_all_arrive() {
    // The link's window is a fraction of what the actors' windows add up to.
    let limits = LimitsConfig {
        actor_window_bytes: 64 * 1024,
        actor_window_msgs: 64,
        link_window_bytes: 128 * 1024,
        link_window_msgs: 256,
        ..LimitsConfig::default()
    };
    let (a, b, legit) = trio(limits).await;
    let mut stores = Vec::new();
    for _ in 0..20 {
        stores.push(b.remote_actor::<Store>("node-a").await.expect("spawn"));
    }
    for i in 0..4000 {
        stores[i % 20].tell(Bytes(vec![0; 1024])).await.expect("tell");
    }
    // A tell refused with Backpressure hands the message back.
    let mut refused = None;
    for _ in 0..10_000 {
        if let Err(e) = stores[0].do_send(Bytes(vec![1; 1024])) {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("the windows fill up at full speed");
    assert!(matches!(refused.error, ClusterError::Backpressure { .. }), "{}", refused.error);
    assert_eq!(refused.into_message().0, vec![1; 1024]);
    let mut total = 0;
    for s in &stores {
        total += s.send(Received).await.expect("count");
    }
    assert!(total >= 4000, "every tell arrived: {total}");
    assert!(b.peer("node-a").is_some(), "the sender kept to the windows: the link is up");
    served(&legit).await;
    shutdown([b, legit, a]).await;
}

#[actix_rt::test]
async fn a_tell_waiting_for_credit_fails_when_the_link_goes() {
    let limits = LimitsConfig { actor_window_msgs: 4, ..LimitsConfig::default() };
    let (a, b, legit) = trio(limits).await;
    let store = b.remote_actor::<Store>("node-a").await.expect("spawn");
    store.tell(Stall(60_000)).await.expect("the actor is now busy for a minute");
    // Fill the actor's window: do_send refuses once it is full.
    let mut sent = 0;
    while store.do_send(Bytes(vec![0; 16])).is_ok() {
        sent += 1;
        assert!(sent < 100, "the window never filled");
    }
    let waiting = {
        let store = store.clone();
        actix_cluster::rt::spawn(async move { store.tell(Bytes(vec![0; 16])).await })
    };
    actix_cluster::rt::task::yield_now().await;
    assert!(!waiting.is_finished(), "the tell waits for credit");
    a.kill();
    let outcome = tokio::time::timeout(DEADLINE, waiting).await.expect("the waiting tell returned").expect("task");
    assert!(matches!(outcome, Err(ClusterError::LinkDown { .. })), "{outcome:?}");
    legit.shutdown().await;
    b.shutdown().await;
}
