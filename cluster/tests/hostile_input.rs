//! A raw TCP client sends bad input to a node; each time the node logs, closes that
//! connection (or rejects just that message with an error reply), and keeps serving a
//! legitimate peer.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::MigrationError;
use actix_cluster_runtime::error::RemoteErrorKind;
use actix_cluster_runtime::ids::{ActorTypeId, LocalActorId, NodeId, RequestId, WireId};
use actix_cluster_runtime::proto::membership::frames::MembershipFrame;
use actix_cluster_runtime::proto::migration::MigrationFrame;
use actix_cluster_runtime::proto::registry::record::{DirKey, Op, Refusal, RegistryFrame};
use actix_cluster_runtime::proto::snapshot::{ClaimAnswer, RecoveryFrame, Replica, SnapshotFrame, SnapshotVersion};
use actix_cluster_runtime::proto::wire::channel::Channel;
use actix_cluster_runtime::proto::wire::frame::{self, Frame, Hello, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[distributed_actor(messages(Add))]
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
}

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.total += msg.0;
        self.total
    }
}

const DEADLINE: Duration = Duration::from_secs(10);

/// Log lines written by every node in this test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
    /// Waits until a log line contains `needle` (logging happens on the node's tasks).
    async fn wait_for(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !self.text().contains(needle) {
            assert!(tokio::time::Instant::now() < deadline, "no log line with {needle:?} in:\n{}", self.text());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn config(name: &str, seeds: &[String]) -> ClusterConfig {
    ClusterConfig::new()
        .node_name(name)
        .bind("127.0.0.1:0")
        .seed_nodes(seeds.iter().cloned())
        .max_frame_size(64 * 1024)
        .build()
        .expect("config")
}

/// Reads until the node closes the connection; returns everything read before that.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
            Err(_) => panic!("the node did not close the connection within {DEADLINE:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads exactly one frame body.
async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut len)).await.expect("frame in time").expect("length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut body)).await.expect("frame in time").expect("body");
    body
}

async fn send(stream: &mut TcpStream, f: &Frame<'_>) {
    stream.write_all(&frame::encode(f).expect("encode")).await.expect("write");
}

/// The hello of the raw client, a node named `raw-client`.
fn raw_hello(cluster: &str) -> Hello {
    Hello::new(cluster, NodeId(0x5eed), "raw-client", "127.0.0.1:1")
}

/// Connects and completes a valid handshake as a node named `raw-client`.
async fn handshaken(node: &ClusterSystem) -> TcpStream {
    let mut s = TcpStream::connect(node.local_addr()).await.expect("connect");
    send(&mut s, &Frame::Hello(Box::new(raw_hello(node.cluster_name())))).await;
    let body = read_frame(&mut s).await;
    assert!(matches!(frame::decode(&body), Ok(Frame::Welcome(_))), "expected a welcome");
    s
}

async fn expect_reply(stream: &mut TcpStream, request: u64) -> (Option<RemoteErrorKind>, Vec<u8>) {
    loop {
        let body = read_frame(stream).await;
        match frame::decode(&body).expect("node sends valid frames") {
            Frame::Reply { request: r, outcome } if r == RequestId(request) => {
                return match outcome {
                    Outcome::Error(e) => (Some(e.kind), Vec::new()),
                    Outcome::Value(v) => (None, v.to_vec()),
                    Outcome::Spawned { .. } => panic!("unexpected spawn reply"),
                };
            }
            // Membership traffic: the node treats the raw client as a member.
            Frame::Heartbeat | Frame::Service { .. } => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads frames until a registry frame for which `want` holds.
async fn expect_registry(stream: &mut TcpStream, want: impl Fn(&RegistryFrame) -> bool) -> RegistryFrame {
    loop {
        let body = read_frame(stream).await;
        if let Frame::Service { channel: Channel::REGISTRY, body } = frame::decode(&body).expect("valid frames") {
            let f = RegistryFrame::decode(body).expect("the node sends valid registry frames");
            if want(&f) {
                return f;
            }
        }
    }
}

/// Reads frames until a migration frame `want` accepts comes.
async fn expect_migration(stream: &mut TcpStream, want: impl Fn(&MigrationFrame) -> bool) -> MigrationFrame {
    loop {
        let body = read_frame(stream).await;
        if let Frame::Service { channel: Channel::MIGRATION, body } = frame::decode(&body).expect("valid frames") {
            let f = MigrationFrame::decode(body).expect("the node sends valid migration frames");
            if want(&f) {
                return f;
            }
        }
    }
}

/// Reads frames until a recovery frame `want` accepts comes.
async fn expect_recovery(stream: &mut TcpStream, want: impl Fn(&RecoveryFrame) -> bool) -> RecoveryFrame {
    loop {
        let body = read_frame(stream).await;
        if let Frame::Service { channel: Channel::RECOVERY, body } = frame::decode(&body).expect("valid frames") {
            let f = RecoveryFrame::decode(body).expect("the node sends valid recovery frames");
            if want(&f) {
                return f;
            }
        }
    }
}

/// An ask from the raw client.
fn ask(request: u64, target: LocalActorId, message: u64, payload: &[u8]) -> Frame<'_> {
    Frame::Ask { request: RequestId(request), target, message: WireId(message), format: Format::Postcard, payload }
}

#[actix_rt::test]
async fn bad_input_is_rejected_while_a_legitimate_peer_keeps_working() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let a = ClusterSystem::new("hostile", config("node-a", &[])).start().await.expect("start a");
    let b = ClusterSystem::new("hostile", config("node-b", &[a.local_addr().to_string()])).start().await.expect("b");
    b.wait_for_peers(&["node-a"], DEADLINE).await.expect("linked");
    let legit = b.remote_actor::<Counter>("node-a").await.expect("spawn on a");
    let mut expected_total = 0;
    let mut legit_still_works = || {
        expected_total += 1;
        let legit = legit.clone();
        let want = expected_total;
        async move { assert_eq!(legit.send(Add(1)).await.expect("legitimate peer is served"), want) }
    };
    legit_still_works().await;
    let target = a.spawn_local(Counter::default()).actor_id().expect("registered");

    // (a) garbage: an HTTP request (its first bytes read as a huge length) and a small
    // frame that is not a valid encoding.
    let mut s = TcpStream::connect(a.local_addr()).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    read_until_closed(&mut s).await;
    let mut s = TcpStream::connect(a.local_addr()).await.expect("connect");
    s.write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]).await.expect("write");
    read_until_closed(&mut s).await;
    logs.wait_for("malformed frame").await;
    legit_still_works().await;

    // (b) a length prefix above the maximum, before and after the handshake.
    let mut s = TcpStream::connect(a.local_addr()).await.expect("connect");
    s.write_all(&(1u32 << 20).to_be_bytes()).await.expect("write");
    read_until_closed(&mut s).await;
    let mut s = handshaken(&a).await;
    s.write_all(&(1u32 << 20).to_be_bytes()).await.expect("write");
    read_until_closed(&mut s).await;
    logs.wait_for("frame size too big").await;
    legit_still_works().await;

    // (c) a well-formed frame before the handshake.
    let mut s = TcpStream::connect(a.local_addr()).await.expect("connect");
    send(&mut s, &Frame::Tell { target, message: WireId(1), format: Format::Postcard, payload: &[1] }).await;
    let answer = read_until_closed(&mut s).await;
    assert!(answer.is_empty(), "nothing is sent to a peer that skipped the handshake");
    logs.wait_for("expected Hello, got Tell").await;
    legit_still_works().await;

    // (d) an unknown message type id and (e) an undecodable payload: that message gets an
    // error reply, the connection stays open and serves the next valid message.
    let mut s = handshaken(&a).await;
    send(&mut s, &ask(1, target, 0xdead_beef, &[])).await;
    assert_eq!(expect_reply(&mut s, 1).await.0, Some(RemoteErrorKind::UnknownMessage));
    let add_id = <Add as ClusterMessage>::WIRE_ID;
    let bad = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    send(&mut s, &ask(2, target, add_id, &bad)).await;
    assert_eq!(expect_reply(&mut s, 2).await.0, Some(RemoteErrorKind::Decode));
    let trailing = [5, 0];
    send(&mut s, &ask(3, target, add_id, &trailing)).await;
    assert_eq!(expect_reply(&mut s, 3).await.0, Some(RemoteErrorKind::Decode), "trailing bytes are rejected");
    send(&mut s, &ask(4, LocalActorId(999), add_id, &[5])).await;
    assert_eq!(expect_reply(&mut s, 4).await.0, Some(RemoteErrorKind::UnknownActor));
    send(&mut s, &ask(5, target, add_id, &[5])).await;
    let (err, value) = expect_reply(&mut s, 5).await;
    assert_eq!((err, value), (None, vec![5]), "a valid ask on the same connection still works");
    logs.wait_for("ask rejected").await;
    // Garbage where the failure detector expects a SWIM packet: rejected, link kept.
    let swim_garbage = MembershipFrame::Swim(&[0xff; 40]).encode();
    send(&mut s, &Frame::Service { channel: Channel::MEMBERSHIP, body: &swim_garbage }).await;
    send(&mut s, &ask(6, target, add_id, &[1])).await;
    assert_eq!(expect_reply(&mut s, 6).await, (None, vec![6]), "served after a bad SWIM packet");
    // A frame for a channel no service listens on: logged, dropped, link kept.
    send(&mut s, &Frame::Service { channel: Channel(999), body: &[1, 2, 3] }).await;
    logs.wait_for("frame for a channel no service listens on").await;
    send(&mut s, &ask(7, target, add_id, &[1])).await;
    assert_eq!(expect_reply(&mut s, 7).await, (None, vec![7]), "served after a frame for an unknown channel");
    // An undecodable body on the membership channel: logged, dropped, link kept.
    send(&mut s, &Frame::Service { channel: Channel::MEMBERSHIP, body: &[0xee, 0xff, 0x01] }).await;
    logs.wait_for("service frame dropped").await;
    logs.wait_for("malformed membership frame").await;
    send(&mut s, &ask(8, target, add_id, &[1])).await;
    assert_eq!(expect_reply(&mut s, 8).await, (None, vec![8]), "served after an undecodable service body");
    // The same on the placement channel.
    send(&mut s, &Frame::Service { channel: Channel::PLACEMENT, body: &[0xee, 0xff, 0x01] }).await;
    logs.wait_for("malformed placement frame").await;
    send(&mut s, &ask(9, target, add_id, &[1])).await;
    assert_eq!(expect_reply(&mut s, 9).await, (None, vec![9]), "served after a bad placement frame");
    // The registry channel: an undecodable body is logged and dropped; a request to register
    // an actor that does not run here, or one made in a view the node does not have, is
    // refused with a reply; the link is kept throughout.
    send(&mut s, &Frame::Service { channel: Channel::REGISTRY, body: &[0xee, 0xff, 0x01] }).await;
    logs.wait_for("malformed registry frame").await;
    let host =
        RegistryFrame::HostRegister { req: 41, key: DirKey::Name("x".into()), actor: LocalActorId(999_999) }.encode();
    send(&mut s, &Frame::Service { channel: Channel::REGISTRY, body: &host }).await;
    expect_registry(&mut s, |f| matches!(f, RegistryFrame::HostReply { req: 41, result: Err(Refusal::NotHere) })).await;
    logs.wait_for("asked to register an actor that does not run here").await;
    let op = Op::Lookup { key: DirKey::Name("x".into()), watch: false };
    let lookup = RegistryFrame::Request { req: 42, view: 12_345, op }.encode();
    send(&mut s, &Frame::Service { channel: Channel::REGISTRY, body: &lookup }).await;
    expect_registry(&mut s, |f| matches!(f, RegistryFrame::Reply { req: 42, result: Err(Refusal::ViewMismatch) }))
        .await;
    send(&mut s, &ask(10, target, add_id, &[1])).await;
    assert_eq!(expect_reply(&mut s, 10).await, (None, vec![10]), "served after bad registry frames");
    // The migration channel: garbage is logged; an offer of a type nobody registered is
    // refused; a commit for a migration that does not exist and an answer to a request
    // never made change nothing; a request to move an actor that does not run here is
    // answered `NotHere`. The link is kept throughout.
    send(&mut s, &Frame::Service { channel: Channel::MIGRATION, body: &[0xee, 0xff, 0x01] }).await;
    logs.wait_for("malformed migration frame").await;
    let offer = MigrationFrame::Offer {
        id: 5,
        actor: actix_cluster::ActorId(77),
        actor_type: ActorTypeId(0xdead_beef),
        format: Format::Postcard,
        state: vec![1, 2, 3],
        keys: Vec::new(),
    };
    send(&mut s, &Frame::Service { channel: Channel::MIGRATION, body: &offer.encode() }).await;
    expect_migration(&mut s, |f| matches!(f, MigrationFrame::Refused { id: 5, .. })).await;
    let commit = MigrationFrame::Commit { id: 99, records: Vec::new() };
    send(&mut s, &Frame::Service { channel: Channel::MIGRATION, body: &commit.encode() }).await;
    let reply = MigrationFrame::Reply { req: 1234, result: Err(MigrationError::NotHere) };
    send(&mut s, &Frame::Service { channel: Channel::MIGRATION, body: &reply.encode() }).await;
    logs.wait_for("answered a migration request it was not asked").await;
    let request = MigrationFrame::Request {
        req: 8,
        actor: LocalActorId(999_999),
        identity: actix_cluster::ActorId(78),
        to: "node-b".into(),
    };
    send(&mut s, &Frame::Service { channel: Channel::MIGRATION, body: &request.encode() }).await;
    expect_migration(&mut s, |f| matches!(f, MigrationFrame::Reply { req: 8, result: Err(MigrationError::NotHere) }))
        .await;
    send(&mut s, &ask(11, target, add_id, &[1])).await;
    assert_eq!(expect_reply(&mut s, 11).await, (None, vec![11]), "served after bad migration frames");
    // The recovery channel: garbage is logged; a replica whose host is another node, or
    // that does not list this node as a holder, is refused; a claim of a replica this node
    // does not hold is answered `None`; an answer to a claim never made and a request to
    // re-create an actor the sender holds no replica of are refused. A replica the sender
    // hosts is kept and acknowledged. The link is kept throughout.
    let recovery = |f: &RecoveryFrame| f.encode();
    send(&mut s, &Frame::Service { channel: Channel::RECOVERY, body: &[0xee, 0xff, 0x01] }).await;
    logs.wait_for("malformed recovery frame").await;
    let replica = |host: &str, holders: &[&str]| Replica {
        identity: actix_cluster::ActorId(4242),
        actor_type: ActorTypeId(0xdead_beef),
        key: None,
        names: vec!["stolen".into()],
        host: host.into(),
        version: SnapshotVersion { epoch: 0, seq: 1 },
        holders: holders.iter().map(|h| (*h).to_owned()).collect(),
        state: Some((Format::Postcard, vec![1, 2, 3])),
    };
    let forged = RecoveryFrame::Snapshot(SnapshotFrame::Store(replica("node-b", &["node-a"])));
    send(&mut s, &Frame::Service { channel: Channel::RECOVERY, body: &recovery(&forged) }).await;
    logs.wait_for("sent a replica of an actor hosted by").await;
    let misdirected = RecoveryFrame::Snapshot(SnapshotFrame::Store(replica("raw-client", &["node-b"])));
    send(&mut s, &Frame::Service { channel: Channel::RECOVERY, body: &recovery(&misdirected) }).await;
    logs.wait_for("does not list this node as a holder").await;
    let claim = RecoveryFrame::Claim { req: 3, identity: actix_cluster::ActorId(9_999) };
    send(&mut s, &Frame::Service { channel: Channel::RECOVERY, body: &recovery(&claim) }).await;
    expect_recovery(&mut s, |f| matches!(f, RecoveryFrame::ClaimReply { req: 3, answer: ClaimAnswer::None })).await;
    let unasked = RecoveryFrame::ClaimReply { req: 77, answer: ClaimAnswer::Retry };
    send(&mut s, &Frame::Service { channel: Channel::RECOVERY, body: &recovery(&unasked) }).await;
    logs.wait_for("answered a claim it was not asked").await;
    let restore = RecoveryFrame::Restore(replica("node-b", &["node-b"]));
    send(&mut s, &Frame::Service { channel: Channel::RECOVERY, body: &recovery(&restore) }).await;
    logs.wait_for("asked for the re-creation of an actor it holds no replica of").await;
    let kept = RecoveryFrame::Snapshot(SnapshotFrame::Store(replica("raw-client", &["node-a"])));
    send(&mut s, &Frame::Service { channel: Channel::RECOVERY, body: &recovery(&kept) }).await;
    expect_recovery(&mut s, |f| matches!(f, RecoveryFrame::Snapshot(SnapshotFrame::Stored { .. }))).await;
    send(&mut s, &ask(12, target, add_id, &[1])).await;
    assert_eq!(expect_reply(&mut s, 12).await, (None, vec![12]), "served after bad recovery frames");
    legit_still_works().await;
    drop(s);

    // (f) a truncated frame, then the client closes.
    let mut s = handshaken(&a).await;
    s.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.expect("write");
    s.shutdown().await.expect("close");
    read_until_closed(&mut s).await;
    logs.wait_for("bytes remaining on stream").await;
    legit_still_works().await;

    // A replayed handshake (a second Hello on an established link) is a protocol error.
    let mut s = handshaken(&a).await;
    send(&mut s, &Frame::Hello(Box::new(raw_hello("hostile")))).await;
    read_until_closed(&mut s).await;
    logs.wait_for("unexpected Hello after the handshake").await;
    legit_still_works().await;

    assert_eq!(a.peers().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["node-b"]);
    b.shutdown().await;
    a.shutdown().await;
}
