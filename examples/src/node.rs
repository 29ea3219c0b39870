//! Runs one cluster node from command-line flags, as a child process of the demo, the
//! tests and the benchmark.
//!
//! Flags: `--cluster NAME --name NAME --bind IP:PORT --seeds A,B`. The node prints
//! `READY <name> <addr>` on stdout once it listens, and shuts down gracefully when its
//! standard input closes (so it never outlives the parent that reads its output).

use std::io::Write;

use actix_cluster::{ClusterConfig, ClusterError, ClusterSystem};

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
}

impl NodeArgs {
    /// Parses flags; unknown flags are an error naming the valid ones.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut out =
            NodeArgs { cluster: "demo".into(), name: String::new(), bind: "127.0.0.1:0".into(), seeds: Vec::new() };
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
                other => return Err(format!("unknown flag {other}; valid: --cluster, --name, --bind, --seeds")),
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
        ]
    }
}

/// Starts the node, prints `READY`, and runs until standard input closes.
pub async fn run(args: NodeArgs) -> Result<(), ClusterError> {
    crate::set_node_name(&args.name);
    let config = ClusterConfig::new()
        .node_name(args.name.clone())
        .bind(args.bind.clone())
        .seed_nodes(args.seeds.clone())
        .build()?;
    let system = ClusterSystem::new(args.cluster.clone(), config).start().await?;
    println!("READY {} {}", system.node_name(), system.local_addr());
    let _ = std::io::stdout().flush();
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

/// Initializes logging to stderr from `RUST_LOG` (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
