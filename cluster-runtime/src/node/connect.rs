//! Connections: the accept loop, dialing (seed nodes retried for as long as the node runs;
//! members retried a few times), DNS discovery, and the links run over what they open.

use std::sync::Arc;
use std::time::Duration;

use crate::node::kernel::Node;
use crate::proto::backoff::Backoff;
use crate::proto::wire::frame::RejectReason;
use crate::proto::wire::handshake::Initiator;
use crate::transport::link::{self, LinkOutcome};
use crate::transport::network::{BoxStream, NetListener};

/// After a failed accept (typically out of file descriptors), wait this long instead of
/// spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// A member (not a seed) is dialed this many times before giving up until asked again.
const CONNECT_ATTEMPTS: u32 = 3;

/// Runs a link over `stream` until it ends; `permit` is held until its handshake ends.
async fn run_link(
    node: &Arc<Node>,
    stream: BoxStream,
    initiator: Initiator,
    addr: String,
    permit: Box<dyn std::any::Any>,
) -> LinkOutcome {
    let settings = node.link_settings.clone();
    link::run(stream, initiator, addr, node.clone(), settings, node.life.links.child_token(), permit).await
}

/// Accepts connections until the node stops; each runs a link in a task of the node.
pub(crate) async fn accept_loop(node: Arc<Node>, mut listener: Box<dyn NetListener>) {
    let stop = node.life.stopping.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                let permit = match node.limits.admit(addr.ip()) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        // Closing at once costs the peer a connection, and this node nothing.
                        tracing::warn!(node = %node.name(), %addr, ?refusal, "too many connections in their handshake; closed");
                        drop(stream);
                        continue;
                    }
                };
                let n = node.clone();
                node.life.tasks.spawn_local(async move {
                    run_link(&n, stream, Initiator::Remote, addr.to_string(), Box::new(permit)).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_RETRY) => {}
                }
            }
        }
    }
}

/// What [`dial`] came to.
enum Dialed {
    /// The node is stopping.
    Stopped,
    /// No connection could be opened.
    Unreachable,
    /// A connection was opened and the link on it ran until this outcome.
    Linked(LinkOutcome),
}

/// Opens a connection to `addr` (within the handshake timeout) and runs a link over it
/// until the link ends.
async fn dial(node: &Arc<Node>, addr: &str) -> Dialed {
    let network = node.config.hooks().network.0.clone();
    let connect = tokio::time::timeout(node.link_settings.handshake_timeout, network.connect(addr.to_owned()));
    let connected = tokio::select! {
        biased;
        () = node.life.stopping.cancelled() => return Dialed::Stopped,
        c = connect => c,
    };
    match connected {
        Ok(Ok(stream)) => Dialed::Linked(run_link(node, stream, Initiator::Local, addr.to_owned(), Box::new(())).await),
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "cannot connect");
            Dialed::Unreachable
        }
        Err(_) => {
            tracing::debug!(%addr, "connect timed out");
            Dialed::Unreachable
        }
    }
}

/// Reconnect backoff towards `addr`, with jitter seeded by the address and this node.
fn backoff(node: &Node, addr: &str) -> Backoff {
    let seed = crate::proto::wire_id(addr) ^ node.id.0 as u64;
    let n = node.config.node();
    Backoff::new(n.reconnect_base, n.reconnect_max, seed)
}

/// Keeps a link to seed `seed` for as long as the node runs.
pub(crate) async fn seed_loop(node: Arc<Node>, seed: String) {
    let stop = node.life.stopping.clone();
    let mut backoff = backoff(&node, &seed);
    loop {
        let wait_for_down = match dial(&node, &seed).await {
            Dialed::Stopped => return,
            Dialed::Unreachable => None,
            Dialed::Linked(LinkOutcome::Ended { .. }) => {
                backoff.reset();
                None
            }
            Dialed::Linked(LinkOutcome::Rejected { reason: RejectReason::DuplicateLink { .. }, peer, .. }) => peer,
            Dialed::Linked(LinkOutcome::Rejected { reason: RejectReason::SelfConnection, .. }) => {
                tracing::info!(%seed, "seed is this node itself; not linking to it");
                return;
            }
            Dialed::Linked(LinkOutcome::Rejected { .. } | LinkOutcome::HandshakeFailed(_)) => None,
        };
        if let Some(peer) = wait_for_down {
            // Linked to this seed through its own connection: reconnect only once it is gone.
            backoff.reset();
            let mut changes = node.peers.watch();
            while node.peers.contains(peer) {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    r = changes.changed() => if r.is_err() { return },
                }
            }
            continue;
        }
        let delay = backoff.next_delay();
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Dials `addr` a few times with backoff and runs the link until it ends.
async fn connect_once(node: &Arc<Node>, addr: &str) {
    let stop = node.life.stopping.clone();
    let mut backoff = backoff(node, addr);
    for _ in 0..CONNECT_ATTEMPTS {
        match dial(node, addr).await {
            Dialed::Stopped => return,
            Dialed::Linked(LinkOutcome::HandshakeFailed(_)) | Dialed::Unreachable => {}
            Dialed::Linked(_) => return,
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

impl Node {
    /// Links to node `name` at `addr`, unless it is this node, already linked, or a
    /// connection to `addr` is under way.
    pub(crate) fn connect_to(&self, name: Option<&str>, addr: &str) {
        if self.life.is_shut_down() || name.is_some_and(|n| n == self.name() || self.peers.by_name(n).is_some()) {
            return;
        }
        let Some(node) = self.me.upgrade() else { return };
        if !self.dialing.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.to_owned()) {
            return;
        }
        let addr = addr.to_owned();
        self.life.tasks.spawn_local(async move {
            connect_once(&node, &addr).await;
            node.dialing.lock().unwrap_or_else(|e| e.into_inner()).remove(&addr);
        });
    }

    /// Resolves `name` and links to every address found that no linked peer listens on.
    pub(crate) fn discover(&self, name: &str, port: u16) {
        let Some(node) = self.me.upgrade() else { return };
        let resolver = self.config.hooks().resolver.0.clone();
        let name = name.to_owned();
        let stop = self.life.stopping.clone();
        self.life.tasks.spawn_local(async move {
            let found = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                r = resolver.resolve(&name, port) => r,
            };
            match found {
                Ok(addrs) => {
                    for addr in addrs {
                        let text = addr.to_string();
                        if addr != node.local_addr && !node.peers.listens_on(&text) {
                            node.connect_to(None, &text);
                        }
                    }
                }
                Err(e) => tracing::warn!(%name, error = %e, "DNS discovery lookup failed"),
            }
        });
    }
}
