//! Nodes as OS processes: spawn a node binary, wait until it is ready, signal it
//! (SIGKILL, SIGSTOP, SIGCONT), stop it gracefully, and read its output.
//!
//! A node binary announces readiness by printing `READY <node-name> <listen-addr>` on its
//! standard output ([`announce_ready`]) and shuts down gracefully when its standard input
//! closes, so it never outlives the test that started it.

use std::ffi::OsStr;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::node::ClusterSystem;

/// Why a process operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The process did not print its `READY` line in time.
    #[error("{program} was not ready within {timeout:?}; its output:\n{output}")]
    NotReady {
        /// The program.
        program: String,
        /// The deadline.
        timeout: Duration,
        /// What it printed.
        output: String,
    },
    /// The process exited before it was ready.
    #[error("{program} exited before it was ready; its output:\n{output}")]
    Exited {
        /// The program.
        program: String,
        /// What it printed.
        output: String,
    },
    /// The `READY` line was malformed.
    #[error("malformed READY line: {0:?}")]
    BadReadyLine(String),
    /// A signal could not be sent.
    #[error("cannot send {signal} to process {pid}: {source}")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// The process.
        pid: u32,
        /// Why.
        source: nix::Error,
    },
    /// The process did not stop in time, or stopped with a failure.
    #[error("{name} did not stop cleanly: {detail}")]
    Stop {
        /// The node.
        name: String,
        /// What happened.
        detail: String,
    },
}

/// Prints the line a [`NodeProcess`] waits for.
pub fn announce_ready(system: &ClusterSystem) {
    println!("READY {} {}", system.node_name(), system.local_addr());
    let _ = std::io::stdout().flush();
}

/// A node running as a child process.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    /// The node's name, from its `READY` line.
    pub name: String,
    /// The address it listens on, from its `READY` line.
    pub addr: SocketAddr,
    output: Arc<Mutex<Vec<String>>>,
    fresh: mpsc::UnboundedReceiver<String>,
}

fn forward<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    output: Arc<Mutex<Vec<String>>>,
    tx: Option<mpsc::UnboundedSender<String>>,
    echo: bool,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo && !line.starts_with("READY ") {
                println!("{line}");
            }
            output.lock().unwrap_or_else(|p| p.into_inner()).push(line.clone());
            if let Some(tx) = &tx {
                let _ = tx.send(line);
            }
        }
    });
}

impl NodeProcess {
    /// Starts `program` with `args` and waits up to `timeout` for its `READY` line. Every
    /// line it writes (stdout and stderr) is kept; with `echo`, stdout lines other than
    /// `READY` are also printed.
    pub async fn spawn<I, S>(
        program: impl AsRef<OsStr>,
        args: I,
        timeout: Duration,
        echo: bool,
    ) -> Result<Self, ProcessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program_name = program.as_ref().to_string_lossy().into_owned();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn { program: program_name.clone(), source })?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            forward(stdout, output.clone(), Some(tx), echo);
        }
        if let Some(stderr) = child.stderr.take() {
            forward(stderr, output.clone(), None, false);
        }
        let dump = |o: &Arc<Mutex<Vec<String>>>| o.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
        let ready = tokio::time::timeout(timeout, async {
            while let Some(line) = rx.recv().await {
                if let Some(rest) = line.strip_prefix("READY ") {
                    return Some(rest.to_owned());
                }
            }
            None
        })
        .await
        .map_err(|_| ProcessError::NotReady { program: program_name.clone(), timeout, output: dump(&output) })?
        .ok_or_else(|| ProcessError::Exited { program: program_name.clone(), output: dump(&output) })?;
        let mut parts = ready.split_whitespace();
        let name = parts.next().ok_or_else(|| ProcessError::BadReadyLine(ready.clone()))?.to_owned();
        let addr =
            parts.next().and_then(|a| a.parse().ok()).ok_or_else(|| ProcessError::BadReadyLine(ready.clone()))?;
        Ok(Self { child, name, addr, output, fresh: rx })
    }

    /// The OS process id (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn signal(&self, sig: Signal, name: &'static str) -> Result<(), ProcessError> {
        let pid = self.pid().ok_or(ProcessError::Stop { name: self.name.clone(), detail: "already exited".into() })?;
        let raw = i32::try_from(pid).map_err(|_| ProcessError::BadReadyLine(format!("pid {pid}")))?;
        signal::kill(Pid::from_raw(raw), sig).map_err(|source| ProcessError::Signal { signal: name, pid, source })
    }

    /// Kills the process with SIGKILL (no goodbye; the kernel resets its sockets) and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Freezes the process with SIGSTOP: its sockets stay open but it stops answering.
    pub fn pause(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGSTOP, "SIGSTOP")
    }

    /// Resumes a paused process with SIGCONT.
    pub fn resume(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGCONT, "SIGCONT")
    }

    /// Closes its standard input, which makes a node binary shut down gracefully, and
    /// waits up to `timeout` for it to exit successfully (killing it otherwise).
    pub async fn stop(mut self, timeout: Duration) -> Result<(), ProcessError> {
        drop(self.child.stdin.take());
        let err = |detail: String| ProcessError::Stop { name: self.name.clone(), detail };
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(err(format!("exited with {status}"))),
            Ok(Err(e)) => Err(err(e.to_string())),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(err(format!("still running after {timeout:?}; killed")))
            }
        }
    }

    /// Standard output lines received since the last call (after the `READY` line).
    pub fn new_lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(l) = self.fresh.try_recv() {
            out.push(l);
        }
        out
    }

    /// Everything the process wrote so far, stdout and stderr, line by line.
    pub fn log(&self) -> Vec<String> {
        self.output.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
