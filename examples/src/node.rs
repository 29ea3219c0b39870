//! Runs one cluster node from command-line flags, as a child process of the demo, the
//! tests and the benchmark.
//!
//! Flags: `--cluster NAME --name NAME --bind IP:PORT --seeds A,B`. The node prints
//! `READY <name> <addr>` on stdout once it listens, and shuts down gracefully when its
//! standard input closes (so it never outlives the parent that reads its output).

use actix_cluster::testkit::process::{NodeProcess, ProcessError};
use actix_cluster::{ClusterConfig, ClusterError, ClusterSystem};

impl NodeArgs {
    /// Flags for a node named `name` in `cluster` on a free loopback port, linking to `seeds`.
    pub fn new(cluster: &str, name: &str, seeds: &[String]) -> Self {
        Self {
            cluster: cluster.into(),
            name: name.into(),
            bind: "127.0.0.1:0".into(),
            seeds: seeds.to_vec(),
            probe_ms: 1000,
        }
    }
}

/// Flags of a node process.
#[derive(Debug, Clone)]
pub struct NodeArgs {
    /// Cluster name.
    pub cluster: String,
    /// Node name.
    pub name: String,
    /// Bind address.
    pub bind: String,
    /// Seed node addresses.
    pub seeds: Vec<String>,
    /// Failure detection period in milliseconds (default 1000).
    pub probe_ms: u64,
}

impl NodeArgs {
    /// Parses flags; unknown flags are an error naming the valid ones.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut out = NodeArgs::new("demo", "", &[]);
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--cluster" => out.cluster = value()?,
                "--name" => out.name = value()?,
                "--bind" => out.bind = value()?,
                "--seeds" => {
                    out.seeds = value()?.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
                }
                "--probe-ms" => out.probe_ms = value()?.parse().map_err(|_| "--probe-ms needs a number".to_string())?,
                other => {
                    return Err(format!("unknown flag {other}; valid: --cluster, --name, --bind, --seeds, --probe-ms"));
                }
            }
        }
        if out.name.is_empty() {
            return Err("--name is required".into());
        }
        Ok(out)
    }

    /// The flags as arguments, for spawning a node process.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--cluster".into(),
            self.cluster.clone(),
            "--name".into(),
            self.name.clone(),
            "--bind".into(),
            self.bind.clone(),
            "--seeds".into(),
            self.seeds.join(","),
            "--probe-ms".into(),
            self.probe_ms.to_string(),
        ]
    }
}

/// The configuration a node process runs with.
pub fn config(args: &NodeArgs) -> Result<ClusterConfig, ClusterError> {
    Ok(ClusterConfig::new()
        .node_name(args.name.clone())
        .bind(args.bind.clone())
        .seed_nodes(args.seeds.clone())
        .probe_interval(std::time::Duration::from_millis(args.probe_ms))
        .build()?)
}

/// Starts the node, prints `READY`, and runs until standard input closes.
pub async fn run(args: NodeArgs) -> Result<(), ClusterError> {
    run_with(args, |_| {}).await
}

/// Like [`run`], with `app` run once the node is up (before `READY`).
pub async fn run_with(args: NodeArgs, app: impl FnOnce(&ClusterSystem)) -> Result<(), ClusterError> {
    crate::set_node_name(&args.name);
    let config = config(&args)?;
    let system = ClusterSystem::new(args.cluster.clone(), config).start().await?;
    app(&system);
    actix_cluster::testkit::process::announce_ready(&system);
    // A blocking read on a helper thread: EOF on stdin means the parent is gone.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = tx.send(());
    });
    let _ = rx.await;
    system.shutdown().await;
    Ok(())
}

/// The `main` of an example program: with `node` as its first argument it runs a node
/// process (the children the example starts, configured by the flags that follow);
/// otherwise it runs `demo`. Either way it exits non-zero on failure, naming `program`.
pub fn main_or_node<F, Fut>(program: &str, demo: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    init_logging();
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("node") {
        args.next();
        let node_args = NodeArgs::parse(args).unwrap_or_else(|e| {
            eprintln!("{program} node: {e}");
            std::process::exit(2)
        });
        if let Err(e) = actix_cluster::rt::System::new().block_on(run(node_args)) {
            eprintln!("{program} node: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = actix_cluster::rt::System::new().block_on(demo()) {
        eprintln!("{program} failed: {e}");
        std::process::exit(1);
    }
}

/// Initializes logging to stderr from `RUST_LOG` (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Starts `exe` with `prefix` arguments and then `args` as flags, and waits for the node's
/// `READY` line.
pub async fn spawn_node(
    exe: &std::path::Path,
    prefix: &[&str],
    args: &NodeArgs,
    timeout: std::time::Duration,
    echo: bool,
) -> Result<NodeProcess, ProcessError> {
    let all: Vec<String> = prefix.iter().map(|s| (*s).to_owned()).chain(args.to_args()).collect();
    NodeProcess::spawn(exe, all, timeout, echo).await
}

/// A demo cluster of three nodes: `node-1` in this process, `node-2` and `node-3` as child
/// processes of this program (started with `node`), probing every `probe_ms`; returns once
/// all three see each other up and linked.
pub async fn demo_cluster(
    cluster: &str,
    probe_ms: u64,
    wait: std::time::Duration,
) -> Result<(actix_cluster::ClusterSystem, NodeProcess, NodeProcess), Box<dyn std::error::Error>> {
    crate::set_node_name("node-1");
    let config = actix_cluster::ClusterConfig::new()
        .node_name("node-1")
        .bind("127.0.0.1:0")
        .probe_interval(std::time::Duration::from_millis(probe_ms))
        .build()?;
    let system = actix_cluster::ClusterSystem::new(cluster, config).start().await?;
    let exe = std::env::current_exe()?;
    let seeds = vec![system.local_addr().to_string()];
    let args = |name: &str| {
        let mut a = NodeArgs::new(cluster, name, &seeds);
        a.probe_ms = probe_ms;
        a
    };
    println!("== starting node-2 and node-3 as processes");
    let node2 = spawn_node(&exe, &["node"], &args("node-2"), wait, true).await?;
    let node3 = spawn_node(&exe, &["node"], &args("node-3"), wait, true).await?;
    let started = std::time::Instant::now();
    while system.membership().up_members().len() < 3 || system.peers().len() < 2 {
        if started.elapsed() > wait {
            return Err("the three nodes did not form a cluster".into());
        }
        actix_cluster::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok((system, node2, node3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_interval_flag_reaches_the_configuration() {
        let args = NodeArgs::parse(["--name", "n1", "--bind", "127.0.0.1:0", "--probe-ms", "150"].map(String::from))
            .expect("valid flags");
        let config = config(&args).expect("valid config");
        assert_eq!(config.membership().probe_interval, std::time::Duration::from_millis(150));
        assert_eq!(config.node_name(), "n1");
    }
}
