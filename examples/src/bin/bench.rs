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
//! Both sides of both pipelines run on a single-threaded runtime per process.

use std::path::Path;
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster_examples::node::{self, NodeArgs};
use actix_cluster_examples::{Count, Echo, Payload, Sink};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

// Both pipelines run in this binary, so both get the same allocator. mimalloc keeps the
// many small, short-lived allocations of a busy link cheap; `--features system-alloc`
// measures with the system allocator instead.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: &str = "0123456789abcdef0123456789abcdef"; // 32 bytes
const READY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Options {
    tells: u64,
    asks: u64,
    runs: usize,
}

fn main() {
    node::init_logging();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("node") => {
            args.remove(0);
            let a = NodeArgs::parse(args).unwrap_or_else(|e| exit(&e));
            if let Err(e) = actix_cluster::rt::System::new().block_on(node::run(a)) {
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
    let mut o = Options { tells: 200_000, asks: 20_000, runs: 3 };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = v.parse().map_err(|_| format!("{flag}: not a number: {v}"))?;
        match flag.as_str() {
            "--tells" => o.tells = n,
            "--asks" => o.asks = n,
            "--runs" => o.runs = n.max(1) as usize,
            other => return Err(format!("unknown flag {other}; valid: --tells, --asks, --runs")),
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
}

impl Figures {
    fn tell_median(&self) -> f64 {
        let mut v = self.tells_per_sec.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn ask_percentile(&self, p: f64) -> f64 {
        let mut v = self.ask_latencies_us.clone();
        v.sort_by(f64::total_cmp);
        let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[idx]
    }
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
    let raw = bench_raw(&exe, o).await?;

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
    b.wait_for_peers(&["bench-a"], READY).await?;
    let mut figures = Figures::default();
    // Warm-up: connections, allocator, caches.
    let warm = b.remote_actor::<Sink>("bench-a").await?;
    for i in 0..10_000 {
        warm.tell(payload(i)).await?;
    }
    warm.send(Count).await?;
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
    b.shutdown().await;
    a.stop(READY).await?;
    Ok(figures)
}

#[derive(serde::Serialize, serde::Deserialize)]
enum RawMsg {
    Tell(Payload),
    Ask(Payload),
    Count,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum RawReply {
    Seq(u64),
    Count(u64),
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
                while let Some(Ok(frame)) = framed.next().await {
                    let reply = match raw_decode::<RawMsg>(&frame) {
                        Ok(RawMsg::Tell(_)) => {
                            count += 1;
                            continue;
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
    for run in 0..o.runs {
        let start = Instant::now();
        for i in 0..o.tells {
            framed.feed(raw_encode(&RawMsg::Tell(payload(i)))?).await?;
        }
        SinkExt::<Bytes>::flush(&mut framed).await?;
        sent += o.tells;
        let counted = match ask(&mut framed, &RawMsg::Count).await? {
            RawReply::Count(c) => c,
            RawReply::Seq(_) => return Err("unexpected reply".into()),
        };
        let elapsed = start.elapsed();
        if counted != sent {
            return Err(format!("raw server counted {counted} of {sent} tells").into());
        }
        let rate = o.tells as f64 / elapsed.as_secs_f64();
        println!("raw pipeline run {}: {} tells in {:?} = {:.0} msg/s", run + 1, o.tells, elapsed, rate);
        figures.tells_per_sec.push(rate);
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
    drop(framed);
    server.stop(READY).await?;
    Ok(figures)
}
