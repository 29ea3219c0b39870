//! Benchmark: node B → node A in two OS processes on loopback, against a raw
//! tokio + tokio-util `LengthDelimitedCodec` + postcard pipeline doing the same work.
//!
//! `cargo run --release -p actix-cluster-examples --bin bench [-- --tells N --asks N --runs N]`
//!
//! Workloads, payload `{ seq: u64, body: String }` with a 32-byte body:
//! - (T) N tells from B, counted at A; B then asks A for the count, and the time until that
//!   reply says N is the throughput time;
//! - (A) M sequential asks (A echoes `seq`), latency per ask.
//!
//! - (G) N tells under each delivery guarantee, timed until every receipt settled and A
//!   counted them all, as a ratio to (T) and to at-most-once;
//! - (B) at-least-once tells in bursts of 100 to 100,000 outstanding messages (send a burst,
//!   wait for its receipts, repeat), the same total per burst size.
//!
//!   The raw pipeline does at-least-once's work for (G) and (B) as an acknowledged stream:
//!   numbered messages the sender keeps until acknowledged, acknowledged by the receiver
//!   after counting them (once nothing more is buffered, or every 64), in the same bursts;
//!   (G) is one burst of N there;
//! - (P) publishes to 1, 10 and 100 subscribers spread over three nodes (A, a third process
//!   C, and B itself), timed until every subscriber counted every publish.
//!
//! Both sides of both pipelines run on a single-threaded runtime per process.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster_examples::node::{self, NodeArgs};
use actix_cluster_examples::{Count, Echo, Payload, Sink, Tick};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

// Both pipelines run in this binary, so both get the same allocator. mimalloc keeps the
// many small, short-lived allocations of a busy link cheap; `--features system-alloc`
// measures with the system allocator instead. It is built without transparent huge pages
// (`no_thp`): with them, memory mimalloc gave back and takes again comes as 2 MiB pages the
// kernel clears on first touch, which took up to half of the guaranteed rows' time (100,000
// unconfirmed messages are tens of MiB) and made them vary from run to run.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: &str = "0123456789abcdef0123456789abcdef"; // 32 bytes
const READY: Duration = Duration::from_secs(30);
/// Burst sizes (outstanding messages) of the at-least-once bursts.
const BURSTS: [u64; 4] = [100, 1_000, 10_000, 100_000];

#[derive(Debug, Clone, Copy)]
struct Options {
    tells: u64,
    asks: u64,
    runs: usize,
    guaranteed: u64,
    txns: u64,
    publishes: u64,
    /// The parts to run, a bit per [`Part`] (none: all).
    only: u8,
}

/// The parts of the benchmark (`--only` runs some, comma-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Tells,
    Guarantees,
    Bursts,
    Publish,
}

impl Options {
    fn runs(&self, part: Part) -> bool {
        self.only == 0 || self.only & (1 << part as u8) != 0
    }
}

/// This process's node, for the subscribers the publish part starts.
static SYSTEM: OnceLock<ClusterSystem> = OnceLock::new();

/// Publishes this process's subscribers handled.
static FANNED: AtomicU64 = AtomicU64::new(0);

/// Starts `count` subscribers of `topic` on the node it runs on.
#[cluster_message(result = "()")]
#[derive(Debug, Serialize, Deserialize)]
struct Subscribe {
    topic: String,
    count: u32,
}

/// How many publishes this process's subscribers handled.
#[cluster_message(result = "u64")]
#[derive(Debug, Serialize, Deserialize)]
struct Fanned;

/// Starts subscribers on its node and counts what they handled.
#[distributed_actor(messages(Subscribe, Fanned))]
#[derive(Debug, Default, Serialize, Deserialize)]
struct Fanout;

impl Handler<Subscribe> for Fanout {
    type Result = ();
    fn handle(&mut self, s: Subscribe, _: &mut Context<Self>) {
        subscribe(&s.topic, s.count);
    }
}

impl Handler<Fanned> for Fanout {
    type Result = u64;
    fn handle(&mut self, _: Fanned, _: &mut Context<Self>) -> u64 {
        FANNED.load(Ordering::Relaxed)
    }
}

/// A subscriber: counts the ticks it handles.
struct Subscriber;

impl Actor for Subscriber {
    type Context = Context<Self>;
}

impl Handler<Tick> for Subscriber {
    type Result = ();
    fn handle(&mut self, _: Tick, _: &mut Context<Self>) {
        FANNED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts `count` subscribers of `topic` here; each is subscribed before this returns.
fn subscribe(topic: &str, count: u32) {
    let Some(system) = SYSTEM.get() else { return };
    for _ in 0..count {
        Subscriber::create(|ctx| {
            system.broker().subscribe::<Tick, Subscriber>(ctx, Some(topic));
            Subscriber
        });
    }
}

fn main() {
    node::init_logging();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("node") => {
            args.remove(0);
            let a = NodeArgs::parse(args).unwrap_or_else(|e| exit(&e));
            let run = node::run_with(a, |system| {
                let _ = SYSTEM.set(system.clone());
            });
            if let Err(e) = actix_cluster::rt::System::new().block_on(run) {
                exit(&e.to_string());
            }
        }
        Some("raw-server") => {
            args.remove(0);
            let a = NodeArgs::parse(args).unwrap_or_else(|e| exit(&e));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| exit(&e.to_string()));
            if let Err(e) = rt.block_on(raw_server(a.bind)) {
                exit(&e.to_string());
            }
        }
        _ => {
            let options = parse_options(&args).unwrap_or_else(|e| exit(&e));
            if let Err(e) = actix_cluster::rt::System::new().block_on(orchestrate(options)) {
                exit(&e.to_string());
            }
        }
    }
}

fn exit(e: &str) -> ! {
    eprintln!("bench: {e}");
    std::process::exit(1)
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o =
        Options { tells: 200_000, asks: 20_000, runs: 3, guaranteed: 100_000, txns: 2_000, publishes: 20_000, only: 0 };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--only" {
            for part in v.split(',') {
                o.only |= 1
                    << (match part {
                        "tells" => Part::Tells,
                        "guarantees" => Part::Guarantees,
                        "bursts" => Part::Bursts,
                        "publish" => Part::Publish,
                        other => return Err(format!("--only {other}: valid: tells, guarantees, bursts, publish")),
                    } as u8);
            }
            continue;
        }
        let n: u64 = v.parse().map_err(|_| format!("{flag}: not a number: {v}"))?;
        match flag.as_str() {
            "--tells" => o.tells = n,
            "--asks" => o.asks = n,
            "--runs" => o.runs = n.max(1) as usize,
            "--guaranteed" => o.guaranteed = n.max(1),
            "--txns" => o.txns = n.max(1),
            "--publishes" => o.publishes = n.max(1),
            other => {
                return Err(format!(
                    "unknown flag {other}; valid: --tells, --asks, --runs, --guaranteed, --txns, --publishes, --only"
                ))
            }
        }
    }
    Ok(o)
}

fn payload(seq: u64) -> Payload {
    Payload { seq, body: BODY.to_owned() }
}

#[derive(Debug, Default, Clone)]
struct Figures {
    tells_per_sec: Vec<f64>,
    ask_latencies_us: Vec<f64>,
    /// (guarantee, msg/s).
    guaranteed: Vec<(&'static str, f64)>,
    /// (burst size, msg/s).
    bursts: Vec<(u64, f64)>,
    /// (subscribers, guarantee, publishes/s).
    publishes: Vec<(u32, &'static str, f64)>,
}

impl Figures {
    fn tell_median(&self) -> f64 {
        median(&self.tells_per_sec)
    }
    fn ask_percentile(&self, p: f64) -> f64 {
        let mut v = self.ask_latencies_us.clone();
        v.sort_by(f64::total_cmp);
        let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[idx]
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn orchestrate(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("actix-cluster benchmark: node B -> node A, two OS processes on loopback, {cores} cores");
    println!(
        "payload {{ seq: u64, body: String }} with a {}-byte body; {} tells, {} sequential asks, {} runs each",
        BODY.len(),
        o.tells,
        o.asks,
        o.runs
    );
    let ours = bench_cluster(&exe, o).await?;
    println!();
    let raw = if o.runs(Part::Tells) || o.runs(Part::Guarantees) || o.runs(Part::Bursts) {
        bench_raw(&exe, o).await?
    } else {
        Figures::default()
    };
    if o.runs(Part::Tells) {
        let (t_ours, t_raw) = (ours.tell_median(), raw.tell_median());
        let (p50_ours, p50_raw) = (ours.ask_percentile(0.50), raw.ask_percentile(0.50));
        let (p99_ours, p99_raw) = (ours.ask_percentile(0.99), raw.ask_percentile(0.99));
        println!();
        println!("{:<22}{:>18}{:>22}{:>12}", "", "actix-cluster", "raw tokio+postcard", "ratio");
        println!(
            "{:<22}{:>12.0} msg/s{:>16.0} msg/s{:>11.1}%   (target >= 50 %)",
            "tell throughput",
            t_ours,
            t_raw,
            100.0 * t_ours / t_raw
        );
        println!(
            "{:<22}{:>15.1} us{:>19.1} us{:>11.2}x   (target <= 1.5x)",
            "ask latency p50",
            p50_ours,
            p50_raw,
            p50_ours / p50_raw
        );
        println!("{:<22}{:>15.1} us{:>19.1} us{:>11.2}x", "ask latency p99", p99_ours, p99_raw, p99_ours / p99_raw);
        for (name, rate) in &ours.guaranteed {
            println!(
                "{:<22}{:>12.0} msg/s{:>16.0} msg/s{:>11.1}%",
                format!("tell_with {name}"),
                rate,
                t_raw,
                100.0 * rate / t_raw
            );
        }
    }
    if !ours.guaranteed.is_empty() {
        let plain = ours.tell_median();
        let at_most_once = ours.guaranteed.iter().find(|(n, _)| *n == "at-most-once").map_or(plain, |(_, r)| *r);
        println!();
        println!("tells by guarantee (timed until every receipt settled):");
        println!("  {:<20}{:>18}{:>16}{:>18}", "", "", "of plain tells", "of at-most-once");
        for (name, rate) in &ours.guaranteed {
            let target = if *name == "at-least-once" { "   (target >= 50 %)" } else { "" };
            println!(
                "  {:<20}{:>12.0} msg/s{:>15.1}%{:>17.1}%{target}",
                name,
                rate,
                100.0 * rate / plain,
                100.0 * rate / at_most_once
            );
        }
        if let (Some((_, ours_alo)), Some((_, raw_alo))) = (
            ours.guaranteed.iter().find(|(n, _)| *n == "at-least-once"),
            raw.guaranteed.iter().find(|(n, _)| *n == "at-least-once"),
        ) {
            println!(
                "  raw acknowledged stream {:>8.0} msg/s; at-least-once is {:.1} % of it",
                raw_alo,
                100.0 * ours_alo / raw_alo
            );
        }
    }
    if !ours.bursts.is_empty() {
        println!();
        println!("at-least-once tells by burst size (send a burst, wait for its receipts, repeat):");
        println!("  {:<20}{:>18}{:>24}{:>10}", "", "actix-cluster", "raw acknowledged", "ratio");
        for (burst, rate) in &ours.bursts {
            let raw_rate = raw.bursts.iter().find(|(b, _)| b == burst).map_or(f64::NAN, |(_, r)| *r);
            println!(
                "  {:<20}{:>12.0} msg/s{:>18.0} msg/s{:>9.1}%",
                format!("{burst} outstanding"),
                rate,
                raw_rate,
                100.0 * rate / raw_rate
            );
        }
        let flat = |rows: &[(u64, f64)]| {
            let (lo, hi) = rows.iter().fold((f64::MAX, 0.0f64), |(lo, hi), (_, r)| (lo.min(*r), hi.max(*r)));
            100.0 * lo / hi
        };
        let from_1000: Vec<(u64, f64)> = ours.bursts.iter().copied().filter(|(b, _)| *b >= 1_000).collect();
        println!(
            "  slowest / fastest: {:.1} % (raw {:.1} %)   (target >= 80 %); from 1,000 on: {:.1} %",
            flat(&ours.bursts),
            flat(&raw.bursts),
            flat(&from_1000)
        );
    }
    if !ours.publishes.is_empty() {
        println!();
        println!("publishes to subscribers on three nodes (timed until every subscriber handled every publish):");
        for (subs, guarantee, rate) in &ours.publishes {
            println!(
                "  {:<34}{:>10.0} publishes/s{:>12.0} deliveries/s",
                format!("{subs} subscriber(s), {guarantee}"),
                rate,
                rate * f64::from(*subs)
            );
        }
    }
    Ok(())
}

async fn bench_cluster(exe: &Path, o: Options) -> Result<Figures, Box<dyn std::error::Error>> {
    let args = NodeArgs::new("bench", "bench-a", &[]);
    let a = node::spawn_node(exe, &["node"], &args, READY, false).await?;
    let config = ClusterConfig::new()
        .node_name("bench-b")
        .bind("127.0.0.1:0")
        .seed_nodes([a.addr.to_string()])
        .request_timeout(Duration::from_secs(60))
        .build()?;
    let b = ClusterSystem::new("bench", config).start().await?;
    let _ = SYSTEM.set(b.clone());
    b.wait_for_peers(&["bench-a"], READY).await?;
    let mut figures = Figures::default();
    // Warm-up: connections, allocator, caches.
    let warm = b.remote_actor::<Sink>("bench-a").await?;
    for i in 0..10_000 {
        warm.tell(payload(i)).await?;
    }
    warm.send(Count).await?;
    if o.runs(Part::Tells) || o.runs(Part::Guarantees) {
        for run in 0..o.runs {
            let sink = b.remote_actor::<Sink>("bench-a").await?;
            let start = Instant::now();
            for i in 0..o.tells {
                sink.tell(payload(i)).await?;
            }
            if std::env::var_os("BENCH_DEBUG").is_some() {
                println!("  sender loop done after {:?}", start.elapsed());
            }
            let counted = sink.send(Count).await?;
            let elapsed = start.elapsed();
            if counted != o.tells {
                return Err(format!("A counted {counted} of {} tells", o.tells).into());
            }
            let rate = o.tells as f64 / elapsed.as_secs_f64();
            println!("actix-cluster run {}: {} tells in {:?} = {:.0} msg/s", run + 1, o.tells, elapsed, rate);
            figures.tells_per_sec.push(rate);
        }
    }
    if o.runs(Part::Tells) {
        let sink = b.remote_actor::<Sink>("bench-a").await?;
        for i in 0..1_000 {
            sink.send(Echo(payload(i))).await?;
        }
        for i in 0..o.asks {
            let t = Instant::now();
            let seq = sink.send(Echo(payload(i))).await?;
            figures.ask_latencies_us.push(t.elapsed().as_secs_f64() * 1e6);
            if seq != i {
                return Err(format!("ask {i} answered {seq}").into());
            }
        }
    }
    if o.runs(Part::Guarantees) {
        use DeliveryGuarantee as G;
        let cases = [
            ("at-most-once", G::AtMostOnce, o.guaranteed),
            ("at-least-once", G::AtLeastOnce, o.guaranteed),
            ("exactly-once", G::ExactlyOnce, o.guaranteed),
            ("ordered", G::Ordered, o.guaranteed),
            ("transactional", G::Transactional, o.txns),
        ];
        for (name, guarantee, n) in cases {
            // Warm-up, as for plain tells.
            guaranteed_run(&b, guarantee, n.min(10_000), n.min(10_000)).await?;
            let mut rates = Vec::new();
            for run in 0..o.runs {
                let rate = guaranteed_run(&b, guarantee, n, n).await?;
                println!("{name} run {}: {n} tells = {rate:.0} msg/s", run + 1);
                rates.push(rate);
            }
            figures.guaranteed.push((name, median(&rates)));
        }
    }
    if o.runs(Part::Bursts) {
        for burst in BURSTS {
            let total = o.guaranteed.max(burst);
            let mut rates = Vec::new();
            for run in 0..o.runs {
                let rate = guaranteed_run(&b, DeliveryGuarantee::AtLeastOnce, total, burst).await?;
                println!("burst {burst} run {}: {total} tells = {rate:.0} msg/s", run + 1);
                rates.push(rate);
            }
            figures.bursts.push((burst, median(&rates)));
        }
    }
    if o.runs(Part::Publish) {
        let args = NodeArgs::new("bench", "bench-c", &[b.local_addr().to_string()]);
        let c = node::spawn_node(exe, &["node"], &args, READY, false).await?;
        b.wait_for_peers(&["bench-a", "bench-c"], READY).await?;
        figures.publishes = bench_publish(&b, o).await?;
        c.stop(READY).await?;
    }
    b.shutdown().await;
    a.stop(READY).await?;
    Ok(figures)
}

/// Sends `n` tells with `guarantee` in bursts of `burst` (waiting for each burst's
/// receipts), then checks A counted them all; msg/s.
async fn guaranteed_run(
    b: &ClusterSystem,
    guarantee: DeliveryGuarantee,
    n: u64,
    burst: u64,
) -> Result<f64, Box<dyn std::error::Error>> {
    let sink = b.remote_actor::<Sink>("bench-a").await?;
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let size = burst.min(n - sent);
        let mut receipts = Vec::with_capacity(size as usize);
        for i in sent..sent + size {
            receipts.push(sink.tell_with(payload(i), guarantee).await?);
        }
        for r in receipts {
            r.await?;
        }
        sent += size;
    }
    let counted = sink.send(Count).await?;
    let elapsed = start.elapsed();
    if std::env::var_os("BENCH_DEBUG").is_some() {
        // Whether the sender's thread (this one: node B's driver and this loop run on it) was busy
        // all along: CPU time close to the elapsed time says the sender is what limits the row.
        let cpu_ms = (thread_cpu_ns() - cpu) / 1e6;
        println!("  sender CPU {cpu_ms:.1} ms of {:.1} ms", elapsed.as_secs_f64() * 1e3);
    }
    if counted != n {
        return Err(format!("A counted {counted} of {n} tells ({guarantee:?})").into());
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// This thread's CPU time so far, in ns (Linux; 0 elsewhere).
fn thread_cpu_ns() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// Publishes to 1, 10 and 100 subscribers spread over A, C and B; (subscribers,
/// guarantee, publishes/s) per case.
async fn bench_publish(
    b: &ClusterSystem,
    o: Options,
) -> Result<Vec<(u32, &'static str, f64)>, Box<dyn std::error::Error>> {
    let pools = [b.remote_actor::<Fanout>("bench-a").await?, b.remote_actor::<Fanout>("bench-c").await?];
    let mut out = Vec::new();
    for subs in [1u32, 10, 100] {
        let topic = format!("fanout-{subs}");
        // Round robin over A, C and B, starting with A.
        let share = |i: u32| (subs + 2 - i) / 3;
        pools[0].send(Subscribe { topic: topic.clone(), count: share(0) }).await?;
        if share(1) > 0 {
            pools[1].send(Subscribe { topic: topic.clone(), count: share(1) }).await?;
        }
        subscribe(&topic, share(2));
        let expected: Vec<&str> = ["bench-a", "bench-c", "bench-b"]
            .into_iter()
            .zip(0..)
            .filter(|(_, i)| share(*i) > 0)
            .map(|(n, _)| n)
            .collect();
        let started = Instant::now();
        loop {
            let nodes = b.broker().subscribed_nodes::<Tick>(Some(&topic)).await;
            if expected.iter().all(|n| nodes.iter().any(|m| m == n)) {
                break;
            }
            if started.elapsed() > READY {
                return Err(format!("{topic}: the subscriptions did not reach the publisher ({nodes:?})").into());
            }
            actix_cluster::rt::time::sleep(Duration::from_millis(10)).await;
        }
        for (name, guarantee) in
            [("at-most-once", DeliveryGuarantee::AtMostOnce), ("at-least-once", DeliveryGuarantee::AtLeastOnce)]
        {
            let mut rates = Vec::new();
            for run in 0..o.runs {
                let before = fanned(&pools).await?;
                let n = o.publishes;
                let start = Instant::now();
                let mut receipts = Vec::new();
                for i in 0..n {
                    let msg = Tick { n: i };
                    if guarantee == DeliveryGuarantee::AtMostOnce {
                        b.broker().publish_to(&topic, msg).await?;
                    } else {
                        receipts.push(b.broker().publish_to_with_guarantee(&topic, msg, guarantee).await?);
                    }
                }
                for r in receipts {
                    let outcome = r.settled().await;
                    if !outcome.failed.is_empty() || !outcome.gone.is_empty() {
                        return Err(format!("{topic}: a publish was not delivered: {outcome:?}").into());
                    }
                }
                let want = before + n * u64::from(subs);
                loop {
                    let now = fanned(&pools).await?;
                    if now >= want {
                        if now > want {
                            return Err(
                                format!("{topic}: {} deliveries, expected {}", now - before, want - before).into()
                            );
                        }
                        break;
                    }
                    if start.elapsed() > READY * 4 {
                        return Err(format!("{topic}: {} of {} deliveries", now - before, want - before).into());
                    }
                    actix_cluster::rt::time::sleep(Duration::from_millis(2)).await;
                }
                let rate = n as f64 / start.elapsed().as_secs_f64();
                println!(
                    "publish to {subs} subscriber(s), {name}, run {}: {n} publishes = {rate:.0} publishes/s",
                    run + 1
                );
                rates.push(rate);
            }
            out.push((subs, name, median(&rates)));
        }
    }
    Ok(out)
}

/// Publishes handled by the subscribers of all three nodes so far.
async fn fanned(pools: &[ActorRef<Fanout>]) -> Result<u64, Box<dyn std::error::Error>> {
    let mut total = FANNED.load(Ordering::Relaxed);
    for pool in pools {
        total += pool.send(Fanned).await?;
    }
    Ok(total)
}

#[derive(serde::Serialize, serde::Deserialize)]
enum RawMsg {
    Tell(Payload),
    Ask(Payload),
    Count,
    /// A message of the acknowledged stream: `seq` numbers it (gapless, from 1).
    Reliable(u64, Payload),
}

#[derive(serde::Serialize, serde::Deserialize)]
enum RawReply {
    Seq(u64),
    Count(u64),
    /// Handled everything of the acknowledged stream up to here.
    Ack(u64),
}

fn raw_encode<T: serde::Serialize>(v: &T) -> Result<Bytes, postcard::Error> {
    postcard::to_stdvec(v).map(Bytes::from)
}

fn raw_decode<'a, T: serde::Deserialize<'a>>(b: &'a [u8]) -> Result<T, String> {
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err("trailing bytes".into()),
        Err(e) => Err(e.to_string()),
    }
}

async fn raw_server(bind: String) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(&bind).await?;
    println!("READY raw {}", listener.local_addr()?);
    // Stop when the parent closes stdin.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        let _ = tx.send(());
    });
    let accept = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            stream.set_nodelay(true).ok();
            tokio::spawn(async move {
                let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
                let mut count = 0u64;
                // The acknowledged stream: handled up to here, and acknowledged up to here.
                let (mut handled, mut acked) = (0u64, 0u64);
                while let Some(Ok(frame)) = framed.next().await {
                    let reply = match raw_decode::<RawMsg>(&frame) {
                        Ok(RawMsg::Tell(_)) => {
                            count += 1;
                            continue;
                        }
                        Ok(RawMsg::Reliable(seq, _)) => {
                            // A copy of one handled already is not handled again.
                            if seq == handled + 1 {
                                handled = seq;
                                count += 1;
                            }
                            // Acknowledged once nothing more is buffered, or every 64.
                            if framed.read_buffer().is_empty() || handled - acked >= 64 {
                                acked = handled;
                                RawReply::Ack(handled)
                            } else {
                                continue;
                            }
                        }
                        Ok(RawMsg::Ask(p)) => RawReply::Seq(p.seq),
                        Ok(RawMsg::Count) => RawReply::Count(count),
                        Err(_) => break,
                    };
                    let Ok(bytes) = raw_encode(&reply) else { break };
                    if framed.send(bytes).await.is_err() {
                        break;
                    }
                }
            });
        }
    };
    tokio::select! {
        _ = rx => {},
        () = accept => {},
    }
    Ok(())
}

async fn bench_raw(exe: &Path, o: Options) -> Result<Figures, Box<dyn std::error::Error>> {
    let args = NodeArgs::new("bench", "raw", &[]);
    let server = node::spawn_node(exe, &["raw-server"], &args, READY, false).await?;
    let stream = TcpStream::connect(server.addr).await?;
    stream.set_nodelay(true)?;
    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
    let mut figures = Figures::default();
    async fn ask(framed: &mut Framed<TcpStream, LengthDelimitedCodec>, m: &RawMsg) -> Result<RawReply, String> {
        framed.send(raw_encode(m).map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())?;
        let frame = framed.next().await.ok_or("closed")?.map_err(|e| e.to_string())?;
        raw_decode(&frame)
    }
    let mut sent = 0u64;
    for i in 0..10_000 {
        framed.feed(raw_encode(&RawMsg::Tell(payload(i)))?).await?;
        sent += 1;
    }
    SinkExt::<Bytes>::flush(&mut framed).await?;
    ask(&mut framed, &RawMsg::Count).await?;
    for run in 0..if o.runs(Part::Tells) { o.runs } else { 0 } {
        let start = Instant::now();
        for i in 0..o.tells {
            framed.feed(raw_encode(&RawMsg::Tell(payload(i)))?).await?;
        }
        SinkExt::<Bytes>::flush(&mut framed).await?;
        sent += o.tells;
        let counted = match ask(&mut framed, &RawMsg::Count).await? {
            RawReply::Count(c) => c,
            RawReply::Seq(_) | RawReply::Ack(_) => return Err("unexpected reply".into()),
        };
        let elapsed = start.elapsed();
        if counted != sent {
            return Err(format!("raw server counted {counted} of {sent} tells").into());
        }
        let rate = o.tells as f64 / elapsed.as_secs_f64();
        println!("raw pipeline run {}: {} tells in {:?} = {:.0} msg/s", run + 1, o.tells, elapsed, rate);
        figures.tells_per_sec.push(rate);
    }
    if !o.runs(Part::Tells) {
        return raw_acknowledged(framed, server, o, sent).await;
    }
    for i in 0..1_000 {
        ask(&mut framed, &RawMsg::Ask(payload(i))).await?;
    }
    for i in 0..o.asks {
        let t = Instant::now();
        let reply = ask(&mut framed, &RawMsg::Ask(payload(i))).await?;
        figures.ask_latencies_us.push(t.elapsed().as_secs_f64() * 1e6);
        if !matches!(reply, RawReply::Seq(s) if s == i) {
            return Err(format!("raw ask {i} answered wrongly").into());
        }
    }
    let acknowledged = raw_acknowledged(framed, server, o, sent).await?;
    Ok(Figures { guaranteed: acknowledged.guaranteed, bursts: acknowledged.bursts, ..figures })
}

/// The raw pipeline doing at-least-once's work: numbered messages the sender keeps until
/// the receiver acknowledges them, acknowledged after they were handled (counted), sent
/// in bursts (each waits for its acknowledgement); `sent` tells were sent on `framed`
/// before. Fills `guaranteed` (one burst of `--guaranteed`) and `bursts`.
async fn raw_acknowledged(
    mut framed: Framed<TcpStream, LengthDelimitedCodec>,
    server: actix_cluster::testkit::process::NodeProcess,
    o: Options,
    mut sent: u64,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let mut figures = Figures::default();
    let mut seq = 0u64;
    let mut unacked = std::collections::VecDeque::new();
    let mut run = async |n: u64, burst: u64, seq: &mut u64| -> Result<f64, Box<dyn std::error::Error>> {
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            let size = burst.min(n - done);
            for i in done..done + size {
                *seq += 1;
                let bytes = raw_encode(&RawMsg::Reliable(*seq, payload(i)))?;
                unacked.push_back((*seq, bytes.clone()));
                framed.feed(bytes).await?;
            }
            SinkExt::<Bytes>::flush(&mut framed).await?;
            while !unacked.is_empty() {
                let frame = framed.next().await.ok_or("raw server closed")??;
                let RawReply::Ack(up_to) = raw_decode(&frame)? else { return Err("unexpected reply".into()) };
                while unacked.front().is_some_and(|(s, _)| *s <= up_to) {
                    unacked.pop_front();
                }
            }
            done += size;
        }
        sent += n;
        framed.send(raw_encode(&RawMsg::Count)?).await?;
        let frame = framed.next().await.ok_or("raw server closed")??;
        let elapsed = start.elapsed();
        match raw_decode(&frame)? {
            RawReply::Count(c) if c == sent => Ok(n as f64 / elapsed.as_secs_f64()),
            RawReply::Count(c) => Err(format!("raw server counted {c} of {sent}").into()),
            _ => Err("unexpected reply".into()),
        }
    };
    if o.runs(Part::Guarantees) {
        let n = o.guaranteed;
        run(n.min(10_000), n.min(10_000), &mut seq).await?;
        let mut rates = Vec::new();
        for r in 0..o.runs {
            let rate = run(n, n, &mut seq).await?;
            println!("raw acknowledged run {}: {n} messages = {rate:.0} msg/s", r + 1);
            rates.push(rate);
        }
        figures.guaranteed.push(("at-least-once", median(&rates)));
    }
    if o.runs(Part::Bursts) {
        for burst in BURSTS {
            let total = o.guaranteed.max(burst);
            let mut rates = Vec::new();
            for r in 0..o.runs {
                let rate = run(total, burst, &mut seq).await?;
                println!("raw acknowledged burst {burst} run {}: {total} messages = {rate:.0} msg/s", r + 1);
                rates.push(rate);
            }
            figures.bursts.push((burst, median(&rates)));
        }
    }
    drop(framed);
    server.stop(READY).await?;
    Ok(figures)
}
