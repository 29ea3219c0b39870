//! Flow control from a sender to an actor, across two OS processes: a sender at full
//! speed to an actor that handles 1,000 messages per second slows to that pace, the
//! receiving process's memory stays bounded, and no message is lost or reordered; a raw
//! peer that ignores its credit and floods is cut off, with the same bound.
//!
//! `FLOW_SECONDS` sets the length of the run (30 s by default).

use std::path::Path;
use std::time::Duration;

use actix_cluster::prelude::*;
use actix_cluster::testkit::process::NodeProcess;
use actix_cluster::ClusterMessage;
use actix_cluster_examples::node::{self, NodeArgs};
use actix_cluster_examples::{Paced, PacedStats, Work};
use actix_cluster_runtime::ids::{NodeId, WireId};
use actix_cluster_runtime::proto::wire::frame::{self, Frame, Hello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(30);
const RATE: u64 = 1000;
const BODY: usize = 1024;
/// The receiver's resident memory may grow by at most this much over the run.
const RSS_BOUND: u64 = 8 << 20;
/// The receiver's resident memory may grow by at most this much under a raw flood.
const FLOOD_RSS_BOUND: u64 = 24 << 20;
/// The receiver's flow-control window in messages of this size (its default 1 MiB).
const WINDOW_MSGS: f64 = (1 << 20) as f64 / BODY as f64;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cluster-node"))
}

/// The resident memory of process `pid`, in bytes (Linux).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[actix_rt::test]
async fn a_fast_sender_slows_to_the_actors_pace_and_the_receivers_memory_stays_bounded() {
    let seconds: u64 = std::env::var("FLOW_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let config = ClusterConfig::new().node_name("sender").bind("127.0.0.1:0").build().expect("config");
    let sender = ClusterSystem::new("flow", config).start().await.expect("start");
    let args = NodeArgs::new("flow", "receiver", &[sender.local_addr().to_string()]);
    let receiver: NodeProcess = node::spawn_node(exe(), &[], &args, DEADLINE, false).await.expect("receiver process");
    let pid = receiver.pid().expect("pid");
    sender.wait_for_peers(&["receiver"], DEADLINE).await.expect("linked");
    let paced = sender.remote_actor_with("receiver", Paced::new(RATE)).await.expect("spawn");
    let baseline = rss(pid).expect("receiver RSS");

    // Full speed for the whole run: every tell waits only for flow-control credit.
    let started = tokio::time::Instant::now();
    let run = Duration::from_secs(seconds);
    let mut sent = 0u64;
    let mut peak = baseline;
    let mut next_sample = started;
    let body = vec![7u8; BODY];
    while started.elapsed() < run {
        paced.tell(Work { seq: sent, body: body.clone() }).await.expect("tell");
        sent += 1;
        if tokio::time::Instant::now() >= next_sample {
            peak = peak.max(rss(pid).unwrap_or(0));
            next_sample += Duration::from_millis(250);
        }
    }
    let sending = started.elapsed();
    // Whatever is still queued drains at the actor's pace.
    let (handled, out_of_order) = loop {
        let stats = paced.send(PacedStats).await.expect("stats");
        peak = peak.max(rss(pid).unwrap_or(0));
        if stats.0 == sent {
            break stats;
        }
        assert!(started.elapsed() < run + DEADLINE, "handled {} of {sent}", stats.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let total = started.elapsed();
    let sender_rate = sent as f64 / sending.as_secs_f64();
    let actor_rate = handled as f64 / total.as_secs_f64();
    let growth = peak.saturating_sub(baseline);
    println!(
        "flow: {seconds} s at full speed: sent {sent} ({sender_rate:.0} msg/s), handled {handled} \
         ({actor_rate:.0} msg/s), out of order {out_of_order}; receiver RSS {:.1} MiB at start, \
         peak {:.1} MiB (+{:.1} MiB, bound {} MiB)",
        baseline as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        growth as f64 / 1048576.0,
        RSS_BOUND >> 20,
    );
    assert_eq!((handled, out_of_order), (sent, 0), "no message lost or reordered");
    let rate = RATE as f64;
    // At most one window ahead of the actor.
    let allowed = rate * sending.as_secs_f64() * 1.02 + WINDOW_MSGS;
    assert!(sent as f64 <= allowed, "the sender was slowed to the actor's pace: {sender_rate:.0} msg/s");
    assert!(actor_rate >= rate * 0.9, "the actor was kept busy: {actor_rate:.0} msg/s");
    assert!(growth <= RSS_BOUND, "receiver memory grew by {growth} bytes");
    receiver.stop(DEADLINE).await.expect("receiver stops");
    sender.shutdown().await;
}

#[actix_rt::test]
async fn a_peer_flooding_past_its_credit_is_cut_off_and_the_receivers_memory_stays_bounded() {
    let config = ClusterConfig::new().node_name("legit").bind("127.0.0.1:0").build().expect("config");
    let legit = ClusterSystem::new("flood", config).start().await.expect("start");
    let args = NodeArgs::new("flood", "receiver", &[legit.local_addr().to_string()]);
    let receiver: NodeProcess = node::spawn_node(exe(), &[], &args, DEADLINE, false).await.expect("receiver process");
    let pid = receiver.pid().expect("pid");
    legit.wait_for_peers(&["receiver"], DEADLINE).await.expect("linked");
    // An actor that handles 10 messages per second: a flood fills its window at once.
    let paced = legit.remote_actor_with("receiver", Paced::new(10)).await.expect("spawn");
    let target = paced.actor_id().expect("id");
    let baseline = rss(pid).expect("receiver RSS");

    // A raw peer: a valid handshake, then 40,000 small tells as fast as the socket takes
    // them, ignoring the window of 16,384 messages it was granted.
    let mut raw = tokio::net::TcpStream::connect(receiver.addr).await.expect("connect");
    let hello = Hello::new("flood", NodeId(0xf100d), "flooder", "127.0.0.1:1");
    raw.write_all(&frame::encode(&Frame::Hello(Box::new(hello))).expect("encode")).await.expect("hello");
    let mut len = [0u8; 4];
    raw.read_exact(&mut len).await.expect("welcome");
    let mut welcome = vec![0u8; u32::from_be_bytes(len) as usize];
    raw.read_exact(&mut welcome).await.expect("welcome");
    assert!(matches!(frame::decode(&welcome), Ok(Frame::Welcome(_))));
    let started = tokio::time::Instant::now();
    let mut peak = baseline;
    let mut written = 0;
    for seq in 0..40_000u64 {
        let payload = postcard::to_stdvec(&Work { seq, body: vec![1; 64] }).expect("payload");
        let tell = Frame::Tell {
            target,
            message: WireId(<Work as ClusterMessage>::WIRE_ID),
            format: actix_cluster::Format::Postcard,
            payload: &payload,
        };
        let sent = tokio::time::timeout(DEADLINE, raw.write_all(&frame::encode(&tell).expect("encode"))).await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
        written += 1;
        if seq % 1000 == 0 {
            peak = peak.max(rss(pid).unwrap_or(0));
        }
    }
    // The receiver closes the flooder's connection, saying why.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, raw.read_to_end(&mut rest)).await.expect("the flooder is cut off");
    let cut_off = started.elapsed();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !receiver.log().iter().any(|l| l.contains("beyond the window")) {
        assert!(tokio::time::Instant::now() < deadline, "no log line about the window:\n{:?}", receiver.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak = peak.max(rss(pid).unwrap_or(0));
    let growth = peak.saturating_sub(baseline);
    println!(
        "flood: a raw peer wrote {written} of 40000 tells before it was cut off after {cut_off:?}; receiver RSS \
         {:.1} MiB at start, peak {:.1} MiB (+{:.1} MiB, bound {} MiB)",
        baseline as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        growth as f64 / 1048576.0,
        FLOOD_RSS_BOUND >> 20,
    );
    assert!(cut_off < Duration::from_secs(4), "cut off for its window, before any idle timeout: {cut_off:?}");
    assert!(growth <= FLOOD_RSS_BOUND, "receiver memory grew by {growth} bytes");
    // The legitimate peer is still served (by another actor: the flooded one works through
    // the window's worth it accepted, at 10 messages per second).
    let other = legit.remote_actor_with("receiver", Paced::new(RATE)).await.expect("spawn after the flood");
    other.tell(Work { seq: 0, body: vec![] }).await.expect("tell");
    assert_eq!(other.send(PacedStats).await.expect("legit ask"), (1, 0));
    drop(paced);
    receiver.stop(DEADLINE).await.expect("receiver stops");
    legit.shutdown().await;
}
