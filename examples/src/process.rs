//! Child node processes: spawn one, wait until it is ready, kill it, read its output.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::node::NodeArgs;

/// A node running as a child process.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    /// The node's name.
    pub name: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
}

impl NodeProcess {
    /// Starts `exe` with `prefix_args` then the node flags, and waits (up to `timeout`) for
    /// its `READY` line. Standard output lines after that are kept for [`Self::lines`];
    /// with `echo`, they are also printed with the node's name in front.
    pub async fn spawn(
        exe: &Path,
        prefix_args: &[&str],
        args: &NodeArgs,
        timeout: Duration,
        echo: bool,
    ) -> Result<Self, String> {
        let mut child = Command::new(exe)
            .args(prefix_args)
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if echo && !line.starts_with("READY ") {
                    println!("{line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = tokio::time::timeout(timeout, async {
            while let Some(line) = rx.recv().await {
                if let Some(rest) = line.strip_prefix("READY ") {
                    return Some(rest.to_owned());
                }
            }
            None
        })
        .await
        .map_err(|_| format!("{} not ready within {timeout:?}", args.name))?
        .ok_or_else(|| format!("{} exited before it was ready", args.name))?;
        let mut parts = ready.split_whitespace();
        let name = parts.next().ok_or("READY without a name")?.to_owned();
        let addr = parts.next().and_then(|a| a.parse().ok()).ok_or("READY without an address")?;
        Ok(Self { child, name, addr, lines: rx })
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process abruptly (SIGKILL): no goodbye, sockets reset by the kernel.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Closes its standard input, which makes it shut down gracefully, and waits for it.
    pub async fn stop(mut self, timeout: Duration) -> Result<(), String> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("{} exited with {status}", self.name)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!("{} did not stop within {timeout:?}", self.name))
            }
        }
    }

    /// Output lines received since the last call.
    pub fn lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(l) = self.lines.try_recv() {
            out.push(l);
        }
        out
    }
}
