//! One link to one peer over one byte stream: handshake, then a read loop and a batching
//! writer task, until either side closes, the peer goes silent, or the node cancels it.
//!
//! The link knows frames, not actors: it hands every decoded frame to a [`LinkHandler`].

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;

use crate::proto::frame::{self, EncodedFrame, Frame, GoodbyeReason, Hello, RejectReason};
use crate::proto::handshake::Initiator;
use tokio_util::codec::LengthDelimitedCodec;

use crate::transport::codec::{frame_codec, HANDSHAKE_MAX_FRAME};

/// Timing and size limits of a link.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Maximum frame body size once the handshake has completed.
    pub max_frame: usize,
    /// How long the peer has to complete the handshake.
    pub handshake_timeout: Duration,
    /// A heartbeat is written when nothing else was written for this long.
    pub heartbeat_interval: Duration,
    /// The link is declared dead when nothing was read for this long.
    pub idle_timeout: Duration,
    /// Capacity of the outbound frame queue; senders wait or fail when it is full.
    pub queue_capacity: usize,
    /// Network conditions imposed on this node's outgoing traffic (tests only).
    #[cfg(feature = "testkit")]
    pub faults: Option<crate::testkit::faults::NetworkFaults>,
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self {
            max_frame: 8 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            queue_capacity: 65_536,
            #[cfg(feature = "testkit")]
            faults: None,
        }
    }
}

/// True if the test's network conditions block traffic from `from` to `to`.
#[cfg(feature = "testkit")]
fn blocked(settings: &LinkSettings, from: &str, to: Option<&str>) -> bool {
    match (&settings.faults, to) {
        (Some(f), Some(to)) => f.is_blocked(from, to),
        _ => false,
    }
}

#[cfg(not(feature = "testkit"))]
fn blocked(_: &LinkSettings, _: &str, _: Option<&str>) -> bool {
    false
}

#[cfg(feature = "testkit")]
fn name_of_addr(settings: &LinkSettings, addr: &str) -> Option<String> {
    settings.faults.as_ref().and_then(|f| f.name_of(addr))
}

#[cfg(not(feature = "testkit"))]
fn name_of_addr(_: &LinkSettings, _: &str) -> Option<String> {
    None
}

/// Writes at most this many bytes per batch before issuing a write.
const BATCH_BYTES: usize = 256 * 1024;
/// Takes at most this many queued frames per batch.
const BATCH_FRAMES: usize = 1024;
/// Initial read buffer: large enough that a busy link reads many frames per syscall.
const READ_BUFFER: usize = 64 * 1024;
/// The read loop yields to other tasks after handling this many buffered frames in a row.
const DRAIN_LIMIT: u32 = 256;
/// Silence is measured in this many steps of the idle timeout.
const IDLE_QUARTERS: u32 = 4;

/// What a [`LinkHandler`] is told when a handshake completes.
pub struct LinkUp {
    /// The peer's identity from its hello.
    pub peer: Hello,
    /// Which side opened the connection.
    pub initiator: Initiator,
    /// Queue of encoded frames (length prefix included) for this link's writer.
    pub sender: mpsc::Sender<EncodedFrame>,
    /// Cancelling this closes the link at once, without draining the queue.
    pub close: CancellationToken,
}

/// Why an established link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEnd {
    /// The peer said goodbye.
    Goodbye(GoodbyeReason),
    /// The stream ended cleanly at a frame boundary (the peer closed or its process died).
    Closed,
    /// The stream ended or failed, or a frame was invalid; the text says which.
    Failed(String),
    /// Nothing arrived for the idle timeout.
    Silent,
    /// This node closed the link.
    Cancelled,
}

/// How a whole link run ended, as reported to whoever opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutcome {
    /// The handshake failed (timeout, bad frame, stream error); nothing was registered.
    HandshakeFailed(String),
    /// One side refused the handshake.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// True if the peer refused, false if this node did.
        by_peer: bool,
        /// The peer's node id, when it is known.
        peer: Option<u128>,
    },
    /// The link was established with `peer` and later ended.
    Ended {
        /// The peer's node id.
        peer: u128,
        /// Why it ended.
        end: LinkEnd,
    },
}

/// The node side of a link: validates peers, registers links, interprets frames.
pub trait LinkHandler: 'static {
    /// This node's hello.
    fn local_hello(&self) -> Hello;
    /// Validates a peer's hello.
    fn check_hello(&self, hello: &Hello) -> Result<(), RejectReason>;
    /// Registers a link that completed its handshake, returning its id, or refuses it
    /// (for example because another link to that peer wins the tie-break).
    fn link_up(&self, up: LinkUp) -> Result<u64, RejectReason>;
    /// Handles one frame received on an established link. An error closes the link.
    fn on_frame(&self, link: u64, peer: u128, frame: Frame<'_>, body: &Bytes) -> Result<(), String>;
    /// The link stopped receiving. After [`LinkEnd::Goodbye`]`(Replaced)` its writer still
    /// runs until the node drops the link's sender or cancels its token; otherwise it is
    /// closed.
    fn link_down(&self, link: u64, peer: u128, end: &LinkEnd);
}

/// Runs a link over `stream` until it ends. `peer_addr` is only used in logs.
pub async fn run<S, H>(
    stream: S,
    initiator: Initiator,
    peer_addr: String,
    handler: Arc<H>,
    settings: LinkSettings,
    cancel: CancellationToken,
) -> LinkOutcome
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    H: LinkHandler,
{
    let (read_half, mut write_half) = tokio::io::split(stream);
    let mut reader = FramedRead::with_capacity(read_half, frame_codec(HANDSHAKE_MAX_FRAME), READ_BUFFER);
    let close = cancel.child_token();
    let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));

    let target = name_of_addr(&settings, &peer_addr);
    let ctx = HandshakeCtx { initiator, settings: &settings, target, sender, close: close.clone() };
    let handshake = handshake(&mut reader, &mut write_half, &*handler, ctx);
    let established = tokio::select! {
        biased;
        r = tokio::time::timeout(settings.handshake_timeout, handshake) => match r {
            Ok(r) => r,
            Err(_) => Err(LinkOutcome::HandshakeFailed(format!(
                "no handshake within {:?}", settings.handshake_timeout
            ))),
        },
        () = close.cancelled() => Err(LinkOutcome::HandshakeFailed("node is shutting down".into())),
    };
    let (link, peer) = match established {
        Ok(ok) => ok,
        Err(outcome) => {
            match &outcome {
                LinkOutcome::Rejected { reason: RejectReason::DuplicateLink { .. }, .. } => {
                    tracing::debug!(%peer_addr, "duplicate link closed; the other connection is kept");
                }
                other => tracing::warn!(%peer_addr, outcome = ?other, "handshake failed; connection closed"),
            }
            let _ = write_half.shutdown().await;
            return outcome;
        }
    };
    tracing::debug!(%peer_addr, peer = %peer.node_name, link, "link established");
    reader.decoder_mut().set_max_frame_length(settings.max_frame);

    let heartbeat = frame::encode(&Frame::Heartbeat).unwrap_or_default();
    #[cfg(feature = "testkit")]
    let writer = match settings.faults.clone() {
        Some(faults) => tokio::task::spawn_local(crate::transport::faulty_writer::write_loop(
            write_half,
            receiver,
            heartbeat,
            settings.heartbeat_interval,
            close.clone(),
            crate::transport::faulty_writer::Direction {
                faults,
                from: handler.local_hello().node_name,
                to: peer.node_name.clone(),
            },
        )),
        None => tokio::task::spawn_local(write_loop(
            write_half,
            receiver,
            heartbeat,
            settings.heartbeat_interval,
            close.clone(),
        )),
    };
    #[cfg(not(feature = "testkit"))]
    let writer = tokio::task::spawn_local(write_loop(
        write_half,
        receiver,
        heartbeat,
        settings.heartbeat_interval,
        close.clone(),
    ));

    let end = read_loop(&mut reader, link, peer.node_id, &*handler, settings.idle_timeout, &close).await;
    match &end {
        LinkEnd::Failed(why) => {
            tracing::warn!(%peer_addr, peer = %peer.node_name, %why, "link failed; connection closed")
        }
        LinkEnd::Silent => tracing::warn!(
            %peer_addr, peer = %peer.node_name, timeout = ?settings.idle_timeout,
            "peer silent for the idle timeout; connection closed"
        ),
        other => tracing::debug!(%peer_addr, peer = %peer.node_name, end = ?other, "link closed"),
    }
    // After a `Replaced` goodbye the peer still reads this connection until we close it,
    // so the writer keeps going until the node moves the traffic to the replacement link
    // (dropping its sender) or gives up waiting for it (cancelling). Any other end means
    // nothing more can be delivered here.
    if end != LinkEnd::Goodbye(GoodbyeReason::Replaced) {
        close.cancel();
    }
    handler.link_down(link, peer.node_id, &end);
    let _ = writer.await;
    LinkOutcome::Ended { peer: peer.node_id, end }
}

/// What the handshake needs besides the stream and the handler.
struct HandshakeCtx<'a> {
    initiator: Initiator,
    settings: &'a LinkSettings,
    /// The peer's name when it is known before its hello (from the address).
    target: Option<String>,
    sender: mpsc::Sender<EncodedFrame>,
    close: CancellationToken,
}

async fn handshake<R, W, H>(
    reader: &mut FramedRead<R, LengthDelimitedCodec>,
    writer: &mut W,
    handler: &H,
    ctx: HandshakeCtx<'_>,
) -> Result<(u64, Hello), LinkOutcome>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: LinkHandler,
{
    let HandshakeCtx { initiator, settings, target, sender, close } = ctx;
    let failed = |e: String| LinkOutcome::HandshakeFailed(e);
    let ours = handler.local_hello();
    // A blocked direction swallows the handshake too; the other side times out.
    let swallowed = || std::future::pending::<Result<(u64, Hello), LinkOutcome>>();
    match initiator {
        Initiator::Local => {
            if blocked(settings, &ours.node_name, target.as_deref()) {
                return swallowed().await;
            }
            write_frame(writer, &Frame::Hello(ours)).await.map_err(failed)?;
            let body = next_body(reader).await.map_err(failed)?;
            let theirs = match frame::decode(&body).map_err(|e| failed(e.to_string()))? {
                Frame::Welcome(h) => h,
                Frame::Reject(reason) => {
                    let peer = match reason {
                        RejectReason::DuplicateLink { node } => Some(node),
                        _ => None,
                    };
                    return Err(LinkOutcome::Rejected { reason, by_peer: true, peer });
                }
                other => return Err(failed(format!("expected Welcome, got {}", other.kind()))),
            };
            if let Err(reason) = handler.check_hello(&theirs) {
                let _ = write_frame(writer, &Frame::Reject(reason.clone())).await;
                return Err(LinkOutcome::Rejected { reason, by_peer: false, peer: Some(theirs.node_id) });
            }
            let up = LinkUp { peer: theirs.clone(), initiator, sender, close };
            match handler.link_up(up) {
                Ok(id) => Ok((id, theirs)),
                Err(reason) => {
                    let _ = write_frame(writer, &Frame::Goodbye(GoodbyeReason::Replaced)).await;
                    Err(LinkOutcome::Rejected { reason, by_peer: false, peer: Some(theirs.node_id) })
                }
            }
        }
        Initiator::Remote => {
            let body = next_body(reader).await.map_err(failed)?;
            let theirs = match frame::decode(&body).map_err(|e| failed(e.to_string()))? {
                Frame::Hello(h) => h,
                other => return Err(failed(format!("expected Hello, got {}", other.kind()))),
            };
            if blocked(settings, &ours.node_name, Some(&theirs.node_name)) {
                return swallowed().await;
            }
            if let Err(reason) = handler.check_hello(&theirs) {
                let _ = write_frame(writer, &Frame::Reject(reason.clone())).await;
                return Err(LinkOutcome::Rejected { reason, by_peer: false, peer: Some(theirs.node_id) });
            }
            let up = LinkUp { peer: theirs.clone(), initiator, sender, close };
            match handler.link_up(up) {
                Ok(id) => {
                    // Frames queued by the node after link_up are written by the writer task,
                    // which starts after this: the Welcome is always first.
                    write_frame(writer, &Frame::Welcome(ours)).await.map_err(failed)?;
                    Ok((id, theirs))
                }
                Err(reason) => {
                    let _ = write_frame(writer, &Frame::Reject(reason.clone())).await;
                    Err(LinkOutcome::Rejected { reason, by_peer: false, peer: Some(theirs.node_id) })
                }
            }
        }
    }
}

async fn next_body<R: AsyncRead + Unpin>(reader: &mut FramedRead<R, LengthDelimitedCodec>) -> Result<BytesMut, String> {
    match reader.next().await {
        Some(Ok(body)) => Ok(body),
        Some(Err(e)) => Err(format!("bad frame: {e}")),
        None => Err("connection closed during the handshake".into()),
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, f: &Frame<'_>) -> Result<(), String> {
    let bytes = frame::encode(f).map_err(|e| e.to_string())?;
    writer.write_all(&bytes).await.map_err(|e| e.to_string())?;
    writer.flush().await.map_err(|e| e.to_string())
}

async fn read_loop<R, H>(
    reader: &mut FramedRead<R, LengthDelimitedCodec>,
    link: u64,
    peer: u128,
    handler: &H,
    idle_timeout: Duration,
    close: &CancellationToken,
) -> LinkEnd
where
    R: AsyncRead + Unpin,
    H: LinkHandler,
{
    // Silence is checked in quarters of the idle timeout, so receiving a frame costs no
    // timer update: the link is silent after four quarters without a frame.
    let mut quiet = tokio::time::interval(idle_timeout / IDLE_QUARTERS);
    quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    quiet.reset();
    let mut quiet_quarters = 0;
    let mut received = false;
    loop {
        let next = tokio::select! {
            biased;
            () = close.cancelled() => return LinkEnd::Cancelled,
            next = reader.next() => next,
            _ = quiet.tick() => {
                quiet_quarters = if received { 0 } else { quiet_quarters + 1 };
                received = false;
                if quiet_quarters >= IDLE_QUARTERS {
                    return LinkEnd::Silent;
                }
                continue;
            }
        };
        received = true;
        let body = match next {
            None => return LinkEnd::Closed,
            Some(Err(e)) => return LinkEnd::Failed(format!("bad frame: {e}")),
            Some(Ok(body)) => body,
        };
        if let Err(end) = handle_body(body, link, peer, handler) {
            return end;
        }
        // Frames already in the read buffer are handled without going back through the
        // select: a clone of the codec decodes them and is put back afterwards.
        let mut codec = reader.decoder().clone();
        let mut drained = 0;
        while drained < DRAIN_LIMIT {
            match codec.decode(reader.read_buffer_mut()) {
                Ok(Some(body)) => {
                    if let Err(end) = handle_body(body, link, peer, handler) {
                        return end;
                    }
                    drained += 1;
                }
                Ok(None) => break,
                Err(e) => return LinkEnd::Failed(format!("bad frame: {e}")),
            }
        }
        *reader.decoder_mut() = codec;
        if drained >= DRAIN_LIMIT {
            // Let the actors this link feeds run before decoding more.
            tokio::task::yield_now().await;
        }
    }
}

fn handle_body<H: LinkHandler>(body: BytesMut, link: u64, peer: u128, handler: &H) -> Result<(), LinkEnd> {
    let body = body.freeze();
    let frame = frame::decode(&body).map_err(|e| LinkEnd::Failed(e.to_string()))?;
    match frame {
        Frame::Heartbeat => Ok(()),
        Frame::Goodbye(reason) => Err(LinkEnd::Goodbye(reason)),
        Frame::Hello(_) | Frame::Welcome(_) | Frame::Reject(_) => {
            Err(LinkEnd::Failed(format!("unexpected {} after the handshake", frame.kind())))
        }
        other => handler.on_frame(link, peer, other, &body).map_err(LinkEnd::Failed),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::Receiver<EncodedFrame>,
    heartbeat: EncodedFrame,
    heartbeat_interval: Duration,
    close: CancellationToken,
) {
    let mut batch: Vec<EncodedFrame> = Vec::with_capacity(BATCH_FRAMES);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // A heartbeat goes out on a tick that follows a whole interval without writes.
    let mut ticks = tokio::time::interval(heartbeat_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.reset();
    let mut wrote = false;
    loop {
        tokio::select! {
            biased;
            () = close.cancelled() => return,
            n = queue.recv_many(&mut batch, BATCH_FRAMES) => {
                if n == 0 {
                    break; // every sender is gone: the link was replaced or closed; drained.
                }
                for f in batch.drain(..) {
                    buf.extend_from_slice(&f);
                }
                // Take whatever else is already queued, up to the batch size, for one write.
                while buf.len() < BATCH_BYTES {
                    match queue.try_recv() {
                        Ok(f) => buf.extend_from_slice(&f),
                        Err(_) => break,
                    }
                }
                wrote = true;
            }
            _ = ticks.tick() => {
                if std::mem::take(&mut wrote) {
                    continue;
                }
                buf.extend_from_slice(&heartbeat);
            }
        }
        let written = tokio::select! {
            biased;
            () = close.cancelled() => return,
            r = write_all_flush(&mut writer, &buf) => r,
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "link write failed");
            close.cancel();
            return;
        }
        buf.clear();
    }
    let _ = writer.shutdown().await;
}

async fn write_all_flush<W: AsyncWrite + Unpin>(writer: &mut W, buf: &[u8]) -> std::io::Result<()> {
    writer.write_all(buf).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    //! Links over in-memory streams (`tokio::io::duplex`): the link is generic over the
    //! stream, and its handshake, delivery, goodbye and silence detection need no sockets.

    use std::sync::Mutex;

    use super::*;
    use crate::format::Format;
    use crate::proto::frame::PROTOCOL_VERSION;
    use crate::proto::handshake;

    #[derive(Default)]
    struct Seen {
        up: Vec<(String, Initiator)>,
        frames: Vec<String>,
        down: Vec<LinkEnd>,
        senders: Vec<mpsc::Sender<EncodedFrame>>,
    }

    struct TestHandler {
        cluster: &'static str,
        id: u128,
        name: &'static str,
        seen: Arc<Mutex<Seen>>,
    }

    impl LinkHandler for TestHandler {
        fn local_hello(&self) -> Hello {
            Hello {
                protocol_version: PROTOCOL_VERSION,
                cluster: self.cluster.into(),
                node_id: self.id,
                node_name: self.name.into(),
                listen_addr: "mem".into(),
                auth: None,
                generation: 0,
                profile: Default::default(),
            }
        }
        fn check_hello(&self, hello: &Hello) -> Result<(), RejectReason> {
            handshake::check_hello(self.cluster, self.id, hello)
        }
        fn link_up(&self, up: LinkUp) -> Result<u64, RejectReason> {
            let mut seen = self.seen.lock().expect("seen");
            seen.up.push((up.peer.node_name.clone(), up.initiator));
            seen.senders.push(up.sender);
            Ok(1)
        }
        fn on_frame(&self, _: u64, _: u128, frame: Frame<'_>, _: &Bytes) -> Result<(), String> {
            let text = match frame {
                Frame::Tell { payload, .. } => format!("tell {}", String::from_utf8_lossy(payload)),
                other => other.kind().to_owned(),
            };
            self.seen.lock().expect("seen").frames.push(text);
            Ok(())
        }
        fn link_down(&self, _: u64, _: u128, end: &LinkEnd) {
            self.seen.lock().expect("seen").down.push(end.clone());
        }
    }

    fn settings() -> LinkSettings {
        LinkSettings {
            max_frame: 1024,
            handshake_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(400),
            queue_capacity: 16,
            ..LinkSettings::default()
        }
    }

    fn handler(cluster: &'static str, id: u128, name: &'static str) -> (Arc<TestHandler>, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        (Arc::new(TestHandler { cluster, id, name, seen: seen.clone() }), seen)
    }

    async fn wait_until(mut f: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition not reached");
    }

    fn local<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("rt");
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn handshake_delivery_and_goodbye_over_an_in_memory_stream() {
        local(async {
            let (a_io, b_io) = tokio::io::duplex(4096);
            let (a, a_seen) = handler("c", 1, "a");
            let (b, b_seen) = handler("c", 2, "b");
            let cancel = CancellationToken::new();
            let ta = tokio::task::spawn_local(run(a_io, Initiator::Local, "b".into(), a, settings(), cancel.clone()));
            let tb = tokio::task::spawn_local(run(b_io, Initiator::Remote, "a".into(), b, settings(), cancel.clone()));
            wait_until(|| a_seen.lock().expect("seen").up.len() == 1 && b_seen.lock().expect("seen").up.len() == 1)
                .await;
            assert_eq!(a_seen.lock().expect("seen").up[0], ("b".to_string(), Initiator::Local));
            assert_eq!(b_seen.lock().expect("seen").up[0], ("a".to_string(), Initiator::Remote));

            let sender = a_seen.lock().expect("seen").senders[0].clone();
            for word in ["one", "two", "three"] {
                let f = frame::encode(&Frame::Tell {
                    target: 1,
                    message: 2,
                    format: Format::Postcard,
                    payload: word.as_bytes(),
                })
                .expect("encode");
                sender.send(f).await.expect("queued");
            }
            wait_until(|| b_seen.lock().expect("seen").frames.len() == 3).await;
            assert_eq!(b_seen.lock().expect("seen").frames, ["tell one", "tell two", "tell three"], "in order");

            // Heartbeats keep an idle link alive well past the idle timeout.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(a_seen.lock().expect("seen").down.is_empty() && b_seen.lock().expect("seen").down.is_empty());

            sender.send(frame::encode(&Frame::Goodbye(GoodbyeReason::Shutdown)).expect("encode")).await.expect("q");
            let (ra, rb) = (ta.await.expect("a"), tb.await.expect("b"));
            assert_eq!(rb, LinkOutcome::Ended { peer: 1, end: LinkEnd::Goodbye(GoodbyeReason::Shutdown) });
            assert!(matches!(ra, LinkOutcome::Ended { peer: 2, .. }), "{ra:?}");
        });
    }

    #[test]
    fn a_peer_of_another_cluster_is_rejected_on_both_sides() {
        local(async {
            let (a_io, b_io) = tokio::io::duplex(4096);
            let (a, a_seen) = handler("blue", 1, "a");
            let (b, b_seen) = handler("green", 2, "b");
            let cancel = CancellationToken::new();
            let ta = tokio::task::spawn_local(run(a_io, Initiator::Local, "b".into(), a, settings(), cancel.clone()));
            let rb = run(b_io, Initiator::Remote, "a".into(), b, settings(), cancel).await;
            let ra = ta.await.expect("a");
            assert_eq!(
                rb,
                LinkOutcome::Rejected { reason: RejectReason::ClusterMismatch, by_peer: false, peer: Some(1) }
            );
            assert!(
                matches!(ra, LinkOutcome::Rejected { reason: RejectReason::ClusterMismatch, by_peer: true, .. }),
                "{ra:?}"
            );
            assert!(a_seen.lock().expect("seen").up.is_empty() && b_seen.lock().expect("seen").up.is_empty());
        });
    }

    #[test]
    fn a_silent_peer_is_dropped_after_the_idle_timeout() {
        local(async {
            let (a_io, mut raw) = tokio::io::duplex(4096);
            let (a, a_seen) = handler("c", 1, "a");
            let started = tokio::time::Instant::now();
            let ta = tokio::task::spawn_local(run(
                a_io,
                Initiator::Remote,
                "raw".into(),
                a,
                settings(),
                CancellationToken::new(),
            ));
            // A peer that completes the handshake and then never writes again (while its
            // connection stays open, as across a network partition).
            let hello = Hello {
                protocol_version: PROTOCOL_VERSION,
                cluster: "c".into(),
                node_id: 9,
                node_name: "raw".into(),
                listen_addr: "mem".into(),
                auth: None,
                generation: 0,
                profile: Default::default(),
            };
            raw.write_all(&frame::encode(&Frame::Hello(hello)).expect("encode")).await.expect("write");
            let reader = tokio::task::spawn_local(async move {
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut sink).await;
            });
            let outcome = ta.await.expect("link");
            assert_eq!(outcome, LinkOutcome::Ended { peer: 9, end: LinkEnd::Silent });
            let elapsed = started.elapsed();
            assert!(elapsed >= settings().idle_timeout, "not before the idle timeout: {elapsed:?}");
            assert!(elapsed <= settings().idle_timeout * 2, "soon after it: {elapsed:?}");
            assert_eq!(a_seen.lock().expect("seen").down, [LinkEnd::Silent]);
            reader.abort();
        });
    }
}
