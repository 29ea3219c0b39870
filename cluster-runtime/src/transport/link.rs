//! One link to one peer over one byte stream: handshake, then a read loop and a batching
//! writer task, until either side closes, the peer goes silent, or the node cancels it.
//!
//! The link knows frames, not actors: it hands every decoded frame to a [`LinkHandler`].

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;

use tokio_util::codec::LengthDelimitedCodec;

use crate::ids::{LinkId, NodeId};
use crate::proto::wire::frame::{self, EncodedFrame, Frame, GoodbyeReason, Hello, RejectReason};
use crate::proto::wire::handshake::Initiator;
use crate::transport::codec::{frame_codec, HANDSHAKE_MAX_FRAME};
use crate::transport::protocol_error::ProtocolError;
use crate::transport::queue::{link_queue, LinkQueue, QueueReceiver};
use crate::transport::shaper::{ShapedDirection, Shaper};

/// Timing and size limits of a link, and the shaping hook. Built by the node from its
/// configuration (where the defaults live).
#[derive(Clone)]
pub(crate) struct LinkSettings {
    /// Maximum frame body size once the handshake has completed.
    pub(crate) max_frame: usize,
    /// How long the peer has to complete the handshake.
    pub(crate) handshake_timeout: Duration,
    /// A heartbeat is written when nothing else was written for this long.
    pub(crate) heartbeat_interval: Duration,
    /// The link is declared dead when nothing was read for this long.
    pub(crate) idle_timeout: Duration,
    /// Capacity of the outbound frame queue; senders wait or fail when it is full.
    pub(crate) queue_capacity: usize,
    /// Bytes the outbound queue may hold.
    pub(crate) queue_bytes: usize,
    /// Decides the fate of every frame written, when set (tests impose network conditions).
    pub(crate) shaper: Option<Arc<dyn Shaper>>,
    /// Bytes per second the peer may send; the link stops reading while it is over.
    pub(crate) inbound_rate: Option<u64>,
}

/// A token bucket over received bytes, one second deep. The clock is read only when the
/// bucket runs dry, not per frame.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl Bucket {
    fn new(rate: u64) -> Self {
        Self { rate: rate as f64, tokens: rate as f64, last: tokio::time::Instant::now() }
    }

    /// Takes `bytes`; returns how long to pause reading if the bucket is in deficit.
    fn take(&mut self, bytes: usize) -> Option<Duration> {
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            return None;
        }
        let now = tokio::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
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
pub(crate) struct LinkUp {
    /// The peer's identity from its hello.
    pub(crate) peer: Hello,
    /// Which side opened the connection.
    pub(crate) initiator: Initiator,
    /// Queue of encoded frames (length prefix included) for this link's writer.
    pub(crate) sender: LinkQueue,
    /// Cancelling this closes the link at once, without draining the queue.
    pub(crate) close: CancellationToken,
}

/// Why an established link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEnd {
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
pub(crate) enum LinkOutcome {
    /// The handshake failed (timeout, bad frame, stream error); nothing was registered.
    HandshakeFailed(String),
    /// One side refused the handshake.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// True if the peer refused, false if this node did.
        by_peer: bool,
        /// The peer's node id, when it is known.
        peer: Option<NodeId>,
    },
    /// The link was established with `peer` and later ended.
    Ended {
        /// The peer's node id.
        peer: NodeId,
        /// Why it ended.
        end: LinkEnd,
    },
}

/// The node side of a link: validates peers, registers links, interprets frames.
pub(crate) trait LinkHandler: 'static {
    /// This node's hello.
    fn local_hello(&self) -> &Hello;
    /// Validates a peer's hello.
    fn check_hello(&self, hello: &Hello) -> Result<(), RejectReason>;
    /// Registers a link that completed its handshake, returning its id, or refuses it
    /// (for example because another link to that peer wins the tie-break).
    fn link_up(&self, up: LinkUp) -> Result<LinkId, RejectReason>;
    /// Handles one frame received on an established link. An error closes the link.
    fn on_frame(&self, link: LinkId, peer: NodeId, frame: Frame<'_>, body: &Bytes) -> Result<(), ProtocolError>;
    /// The link paused reading because the peer sent faster than allowed.
    fn throttled(&self, peer: NodeId);
    /// The link stopped receiving. After [`LinkEnd::Goodbye`]`(Replaced)` its writer still
    /// runs until the node drops the link's sender or cancels its token; otherwise it is
    /// closed.
    fn link_down(&self, link: LinkId, peer: NodeId, end: &LinkEnd);
}

/// Runs a link over `stream` until it ends. `peer_addr` is only used in logs.
pub(crate) async fn run<S, H>(
    stream: S,
    initiator: Initiator,
    peer_addr: String,
    handler: Arc<H>,
    settings: LinkSettings,
    cancel: CancellationToken,
    permit: Box<dyn std::any::Any>,
) -> LinkOutcome
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    H: LinkHandler,
{
    let (read_half, mut write_half) = tokio::io::split(stream);
    let mut reader = FramedRead::with_capacity(read_half, frame_codec(HANDSHAKE_MAX_FRAME), READ_BUFFER);
    let close = cancel.child_token();
    let (sender, receiver) = link_queue(settings.queue_capacity, settings.queue_bytes);

    let target = settings.shaper.as_ref().and_then(|s| s.name_of(&peer_addr));
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
    // The connection no longer counts as one in its handshake.
    drop(permit);
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
    tracing::debug!(%peer_addr, peer = %peer.node_name, %link, "link established");
    reader.decoder_mut().set_max_frame_length(settings.max_frame);

    let heartbeat = frame::encode(&Frame::Heartbeat).unwrap_or_default();
    let shaped = settings
        .shaper
        .clone()
        .map(|shaper| ShapedDirection::new(shaper, handler.local_hello().node_name.clone(), peer.node_name.clone()));
    let writer = tokio::task::spawn_local(write_loop(
        write_half,
        receiver,
        Heartbeat { frame: heartbeat, interval: settings.heartbeat_interval },
        close.clone(),
        shaped,
    ));

    let limits = ReadLimits { idle_timeout: settings.idle_timeout, rate: settings.inbound_rate };
    let end = read_loop(&mut reader, link, peer.node_id, &*handler, limits, &close).await;
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
    sender: LinkQueue,
    close: CancellationToken,
}

async fn handshake<R, W, H>(
    reader: &mut FramedRead<R, LengthDelimitedCodec>,
    writer: &mut W,
    handler: &H,
    ctx: HandshakeCtx<'_>,
) -> Result<(LinkId, Hello), LinkOutcome>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: LinkHandler,
{
    let HandshakeCtx { initiator, settings, target, sender, close } = ctx;
    let failed = |e: String| LinkOutcome::HandshakeFailed(e);
    let ours = handler.local_hello();
    // A blocked direction swallows the handshake too; the other side times out.
    let blocked = |to: Option<&str>| match (&settings.shaper, to) {
        (Some(s), Some(to)) => s.is_blocked(&ours.node_name, to),
        _ => false,
    };
    let swallowed = || std::future::pending::<Result<(LinkId, Hello), LinkOutcome>>();
    match initiator {
        Initiator::Local => {
            if blocked(target.as_deref()) {
                return swallowed().await;
            }
            write_frame(writer, &Frame::Hello(Box::new(ours.clone()))).await.map_err(failed)?;
            let body = next_body(reader).await.map_err(failed)?;
            let theirs = match frame::decode(&body).map_err(|e| failed(e.to_string()))? {
                Frame::Welcome(h) => *h,
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
                Frame::Hello(h) => *h,
                other => return Err(failed(format!("expected Hello, got {}", other.kind()))),
            };
            if blocked(Some(&theirs.node_name)) {
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
                    write_frame(writer, &Frame::Welcome(Box::new(ours.clone()))).await.map_err(failed)?;
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

/// What bounds a link's reading: silence and the peer's rate.
struct ReadLimits {
    idle_timeout: Duration,
    rate: Option<u64>,
}

async fn read_loop<R, H>(
    reader: &mut FramedRead<R, LengthDelimitedCodec>,
    link: LinkId,
    peer: NodeId,
    handler: &H,
    limits: ReadLimits,
    close: &CancellationToken,
) -> LinkEnd
where
    R: AsyncRead + Unpin,
    H: LinkHandler,
{
    let idle_timeout = limits.idle_timeout;
    let mut bucket = limits.rate.map(Bucket::new);
    let mut pause = None;
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
        if let Some(b) = bucket.as_mut() {
            pause = b.take(body.len());
        }
        if let Err(end) = handle_body(body, link, peer, handler) {
            return end;
        }
        // Frames already in the read buffer are handled without going back through the
        // select: a clone of the codec decodes them and is put back afterwards.
        let mut codec = reader.decoder().clone();
        let mut drained = 0;
        while drained < DRAIN_LIMIT && pause.is_none() {
            match codec.decode(reader.read_buffer_mut()) {
                Ok(Some(body)) => {
                    if let Some(b) = bucket.as_mut() {
                        pause = b.take(body.len());
                    }
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
        if let Some(wait) = pause.take() {
            // Over the peer's rate: stop reading, so its frames wait in the socket and then
            // in its own queues, not in this node's memory.
            handler.throttled(peer);
            tokio::select! {
                biased;
                () = close.cancelled() => return LinkEnd::Cancelled,
                () = tokio::time::sleep(wait) => {}
            }
        } else if drained >= DRAIN_LIMIT {
            // Let the actors this link feeds run before decoding more.
            tokio::task::yield_now().await;
        }
    }
}

fn handle_body<H: LinkHandler>(body: BytesMut, link: LinkId, peer: NodeId, handler: &H) -> Result<(), LinkEnd> {
    let body = body.freeze();
    let failed = |e: ProtocolError| LinkEnd::Failed(e.to_string());
    let frame = frame::decode(&body).map_err(|e| failed(e.into()))?;
    match frame {
        Frame::Heartbeat => Ok(()),
        Frame::Goodbye(reason) => Err(LinkEnd::Goodbye(reason)),
        Frame::Hello(_) | Frame::Welcome(_) | Frame::Reject(_) => {
            Err(LinkEnd::Failed(format!("unexpected {} after the handshake", frame.kind())))
        }
        other => handler.on_frame(link, peer, other, &body).map_err(failed),
    }
}

/// The heartbeat frame and how long the writer waits before sending it on an idle link.
struct Heartbeat {
    frame: EncodedFrame,
    interval: Duration,
}

/// The link's one writer: batches queued frames into one write, sends heartbeats on an
/// idle link, and, when the direction is shaped, holds each frame until it is due.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: QueueReceiver,
    heartbeat: Heartbeat,
    close: CancellationToken,
    mut shaped: Option<ShapedDirection>,
) {
    let mut batch: Vec<EncodedFrame> = Vec::with_capacity(BATCH_FRAMES);
    let mut buf = Vec::with_capacity(64 * 1024);
    // A heartbeat goes out on a tick that follows a whole interval without writes.
    let mut ticks = tokio::time::interval(heartbeat.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.reset();
    let mut wrote = false;
    let mut open = true;
    // Bytes in `buf` that came from the queue (heartbeats do not), given back once written.
    let mut from_queue = 0;
    loop {
        let next_due = shaped.as_ref().and_then(ShapedDirection::next_due);
        if !open && next_due.is_none() {
            break; // every sender is gone (the link was replaced or closed) and all is written
        }
        tokio::select! {
            biased;
            () = close.cancelled() => return,
            n = queue.rx.recv_many(&mut batch, BATCH_FRAMES), if open => {
                if n == 0 {
                    open = false;
                }
                match shaped.as_mut() {
                    None => {
                        for f in batch.drain(..) {
                            from_queue += f.len();
                            buf.extend_from_slice(&f);
                        }
                        // Take whatever else is already queued, up to the batch size, for one write.
                        while buf.len() < BATCH_BYTES {
                            match queue.rx.try_recv() {
                                Ok(f) => {
                                    from_queue += f.len();
                                    buf.extend_from_slice(&f);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    Some(s) => {
                        // Held frames live in the shaper, outside the queue's bounds.
                        let len: usize = batch.iter().map(Vec::len).sum();
                        batch.drain(..).for_each(|f| s.schedule(f));
                        queue.written(len);
                    }
                }
                wrote = n > 0;
            }
            () = tokio::time::sleep_until(next_due.unwrap_or_else(tokio::time::Instant::now)), if next_due.is_some() => {}
            _ = ticks.tick(), if open => {
                if !std::mem::take(&mut wrote) {
                    match shaped.as_mut() {
                        None => buf.extend_from_slice(&heartbeat.frame),
                        Some(s) => s.schedule(heartbeat.frame.clone()),
                    }
                }
            }
        }
        if let Some(s) = shaped.as_mut() {
            s.take_due(&mut buf);
        }
        if buf.is_empty() {
            continue;
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
        queue.written(std::mem::take(&mut from_queue));
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
    use crate::ids::{LocalActorId, WireId};
    use crate::proto::wire::handshake;

    #[derive(Default)]
    struct Seen {
        up: Vec<(String, Initiator)>,
        frames: Vec<String>,
        down: Vec<LinkEnd>,
        senders: Vec<LinkQueue>,
    }

    struct TestHandler {
        hello: Hello,
        seen: Arc<Mutex<Seen>>,
    }

    impl LinkHandler for TestHandler {
        fn local_hello(&self) -> &Hello {
            &self.hello
        }
        fn check_hello(&self, hello: &Hello) -> Result<(), RejectReason> {
            handshake::check_hello(&self.hello.cluster, self.hello.node_id, hello)
        }
        fn link_up(&self, up: LinkUp) -> Result<LinkId, RejectReason> {
            let mut seen = self.seen.lock().expect("seen");
            seen.up.push((up.peer.node_name.clone(), up.initiator));
            seen.senders.push(up.sender);
            Ok(LinkId(1))
        }
        fn on_frame(&self, _: LinkId, _: NodeId, frame: Frame<'_>, _: &Bytes) -> Result<(), ProtocolError> {
            let text = match frame {
                Frame::Tell { payload, .. } => format!("tell {}", String::from_utf8_lossy(payload)),
                other => other.kind().to_owned(),
            };
            self.seen.lock().expect("seen").frames.push(text);
            Ok(())
        }
        fn throttled(&self, _: NodeId) {}
        fn link_down(&self, _: LinkId, _: NodeId, end: &LinkEnd) {
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
            queue_bytes: 1 << 20,
            shaper: None,
            inbound_rate: None,
        }
    }

    fn handler(cluster: &'static str, id: u128, name: &'static str) -> (Arc<TestHandler>, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        (Arc::new(TestHandler { hello: Hello::new(cluster, NodeId(id), name, "mem"), seen: seen.clone() }), seen)
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
            let ta = tokio::task::spawn_local(run(
                a_io,
                Initiator::Local,
                "b".into(),
                a,
                settings(),
                cancel.clone(),
                Box::new(()),
            ));
            let tb = tokio::task::spawn_local(run(
                b_io,
                Initiator::Remote,
                "a".into(),
                b,
                settings(),
                cancel.clone(),
                Box::new(()),
            ));
            wait_until(|| a_seen.lock().expect("seen").up.len() == 1 && b_seen.lock().expect("seen").up.len() == 1)
                .await;
            assert_eq!(a_seen.lock().expect("seen").up[0], ("b".to_string(), Initiator::Local));
            assert_eq!(b_seen.lock().expect("seen").up[0], ("a".to_string(), Initiator::Remote));

            let sender = a_seen.lock().expect("seen").senders[0].clone();
            for word in ["one", "two", "three"] {
                let f = frame::encode(&Frame::Tell {
                    target: LocalActorId(1),
                    message: WireId(2),
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
            assert_eq!(rb, LinkOutcome::Ended { peer: NodeId(1), end: LinkEnd::Goodbye(GoodbyeReason::Shutdown) });
            assert!(matches!(ra, LinkOutcome::Ended { peer: NodeId(2), .. }), "{ra:?}");
        });
    }

    #[test]
    fn the_bucket_lets_a_second_of_bytes_through_then_paces_the_rest() {
        local(async {
            let mut b = Bucket::new(1000);
            assert_eq!(b.take(600), None);
            assert_eq!(b.take(400), None, "a full second of bytes at once");
            let wait = b.take(500).expect("in deficit");
            assert_eq!(wait, Duration::from_millis(500));
            tokio::time::sleep(wait).await;
            assert_eq!(b.take(0), None, "paid back after the pause");
        });
    }

    #[test]
    fn a_peer_of_another_cluster_is_rejected_on_both_sides() {
        local(async {
            let (a_io, b_io) = tokio::io::duplex(4096);
            let (a, a_seen) = handler("blue", 1, "a");
            let (b, b_seen) = handler("green", 2, "b");
            let cancel = CancellationToken::new();
            let ta = tokio::task::spawn_local(run(
                a_io,
                Initiator::Local,
                "b".into(),
                a,
                settings(),
                cancel.clone(),
                Box::new(()),
            ));
            let rb = run(b_io, Initiator::Remote, "a".into(), b, settings(), cancel, Box::new(())).await;
            let ra = ta.await.expect("a");
            assert_eq!(
                rb,
                LinkOutcome::Rejected { reason: RejectReason::ClusterMismatch, by_peer: false, peer: Some(NodeId(1)) }
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
                Box::new(()),
            ));
            // A peer that completes the handshake and then never writes again (while its
            // connection stays open, as across a network partition).
            let hello = Hello::new("c", NodeId(9), "raw", "mem");
            raw.write_all(&frame::encode(&Frame::Hello(Box::new(hello))).expect("encode")).await.expect("write");
            let reader = tokio::task::spawn_local(async move {
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut sink).await;
            });
            let outcome = ta.await.expect("link");
            assert_eq!(outcome, LinkOutcome::Ended { peer: NodeId(9), end: LinkEnd::Silent });
            let elapsed = started.elapsed();
            assert!(elapsed >= settings().idle_timeout, "not before the idle timeout: {elapsed:?}");
            assert!(elapsed <= settings().idle_timeout * 2, "soon after it: {elapsed:?}");
            assert_eq!(a_seen.lock().expect("seen").down, [LinkEnd::Silent]);
            reader.abort();
        });
    }
}
