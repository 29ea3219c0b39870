//! Sending: tells (failing fast or waiting for queue room), requests with a deadline, and
//! replies.

use std::time::Duration;

use crate::error::{ClusterError, RemoteError, RemoteErrorKind};
use crate::ids::{LinkId, LocalActorId, NodeId, RequestId};
use crate::node::kernel::Node;
use crate::node::peers::TellBlocked;
use crate::node::requests::Reply;
use crate::proto::wire::frame::{self, EncodedFrame, Frame, Outcome};
use crate::transport::queue::{LinkQueue, QueueError};

/// Refuses a frame larger than the receiving peer accepts, before it is queued.
pub(crate) fn check_size(bytes: EncodedFrame, max: usize) -> Result<EncodedFrame, ClusterError> {
    let size = frame::body_len(&bytes);
    if size > max {
        return Err(ClusterError::TooLarge { size, max });
    }
    Ok(bytes)
}

impl Node {
    /// Queues a one-way frame of `bytes` for actor `target` of `peer` without waiting;
    /// fails with [`ClusterError::Backpressure`] when the actor's credit or the link's queue
    /// is exhausted.
    pub(crate) fn try_tell(
        &self,
        peer: NodeId,
        peer_name: &str,
        target: LocalActorId,
        bytes: EncodedFrame,
    ) -> Result<(), ClusterError> {
        if self.life.is_shut_down() {
            return Err(ClusterError::Shutdown);
        }
        let size = frame::body_len(&bytes);
        match self.peers.try_tell(peer, target, bytes) {
            Ok(()) => Ok(()),
            Err(TellBlocked::NoCredit(..)) => Err(ClusterError::Backpressure { node: peer_name.to_owned() }),
            Err(TellBlocked::QueueFull(..)) => {
                self.peers.refund(peer, target, size);
                Err(ClusterError::Backpressure { node: peer_name.to_owned() })
            }
            Err(TellBlocked::Closed | TellBlocked::NoLink) => {
                Err(ClusterError::LinkDown { node: peer_name.to_owned() })
            }
        }
    }

    /// Queues a one-way frame for actor `target` of `peer`, waiting for the actor's credit
    /// and for room in the link's queue.
    pub(crate) async fn tell(
        &self,
        peer: NodeId,
        peer_name: &str,
        target: LocalActorId,
        bytes: EncodedFrame,
    ) -> Result<(), ClusterError> {
        let mut bytes = bytes;
        loop {
            if self.life.is_shut_down() {
                return Err(ClusterError::Shutdown);
            }
            let (credit, back) = match self.peers.try_tell(peer, target, bytes) {
                Ok(()) => {
                    // A loop of awaited tells that never wait would starve the link's writer
                    // on this thread; yield when the task's budget is spent.
                    tokio::task::consume_budget().await;
                    return Ok(());
                }
                Err(TellBlocked::NoCredit(credit, back)) => (credit, back),
                Err(TellBlocked::QueueFull(queue, back)) => {
                    // Its credit is taken: wait for room.
                    return queue.send(back).await.map_err(|_| ClusterError::LinkDown { node: peer_name.to_owned() });
                }
                Err(TellBlocked::Closed | TellBlocked::NoLink) => {
                    return Err(ClusterError::LinkDown { node: peer_name.to_owned() })
                }
            };
            bytes = back;
            // Registered before checking again, so credit that arrives in between wakes it.
            let returned = credit.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if self.peers.may_tell(peer, target) {
                continue;
            }
            tokio::select! {
                biased;
                () = self.life.stopping.cancelled() => return Err(ClusterError::Shutdown),
                () = returned => {}
            }
        }
    }

    /// Sends a request built by `build(request_id)` to `peer` and waits for its reply, up
    /// to `timeout`.
    pub(crate) async fn request(
        &self,
        peer: NodeId,
        peer_name: &str,
        timeout: Duration,
        build: impl FnOnce(RequestId) -> Result<EncodedFrame, ClusterError>,
    ) -> Result<Reply, ClusterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (request, rx) = self.requests.open(peer);
        // Registered before the link is looked up, so a link that goes down from here on
        // fails this request; checked after, so a shutdown that began meanwhile does too.
        let fail = |e: ClusterError| {
            self.requests.forget(request);
            Err(e)
        };
        if self.life.is_shut_down() {
            return fail(ClusterError::Shutdown);
        }
        let bytes = match build(request) {
            Ok(b) => b,
            Err(e) => return fail(e),
        };
        let Some(sender) = self.peers.sender(peer) else {
            return fail(ClusterError::LinkDown { node: peer_name.to_owned() });
        };
        let queued = match sender.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(QueueError::Closed) => Err(()),
            Err(QueueError::Full(bytes)) => match tokio::time::timeout_at(deadline, sender.send(bytes)).await {
                Ok(r) => r.map_err(|_| ()),
                Err(_) => return fail(ClusterError::Timeout(timeout)),
            },
        };
        drop(sender);
        if queued.is_err() {
            return fail(ClusterError::LinkDown { node: peer_name.to_owned() });
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClusterError::Shutdown),
            Err(_) => fail(ClusterError::Timeout(timeout)),
        }
    }

    /// Queues a frame that must not be lost (a reply, credit): at once if there is room,
    /// else in a task of the node that waits for it.
    pub(crate) fn queue_or_wait(&self, queue: &LinkQueue, bytes: EncodedFrame) {
        if let Err(QueueError::Full(bytes)) = queue.try_send(bytes) {
            let queue = queue.clone();
            let stopping = self.life.stopping.clone();
            self.life.tasks.spawn_local(async move {
                tokio::select! {
                    biased;
                    () = stopping.cancelled() => {}
                    _ = queue.send(bytes) => {}
                }
            });
        }
    }

    /// Sends flow-control credit for actor `target` back on `link`, if it is still up.
    pub(crate) fn send_credit(&self, link: LinkId, target: LocalActorId, bytes: u64, msgs: u64) {
        let Some(queue) = self.peers.queue_of_link(link) else { return };
        if let Ok(frame) = frame::encode(&Frame::Credit { target, bytes, msgs }) {
            self.queue_or_wait(&queue, frame);
        }
    }

    /// Queues a reply for `peer` without waiting. Dropped with a log line if the peer is
    /// gone; waits in a task of the node if the queue is full.
    pub(crate) fn send_reply(&self, peer: NodeId, request: RequestId, outcome: Outcome<'_>) {
        let bytes = match frame::encode(&Frame::Reply { request, outcome }) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reply");
                return;
            }
        };
        match self.peers.route(peer) {
            None => tracing::debug!(peer = %peer, "reply dropped: no link to the asking node"),
            Some((sender, max)) => {
                let bytes = if frame::body_len(&bytes) > max {
                    let detail = format!(
                        "a reply of {} bytes exceeds the {max} bytes the asking node accepts",
                        frame::body_len(&bytes)
                    );
                    tracing::warn!(%peer, %request, %detail, "reply too large; an error is sent instead");
                    let outcome = Outcome::Error(RemoteError::new(RemoteErrorKind::TooLarge, detail));
                    match frame::encode(&Frame::Reply { request, outcome }) {
                        Ok(b) => b,
                        Err(_) => return,
                    }
                } else {
                    bytes
                };
                self.queue_or_wait(&sender, bytes);
            }
        }
    }
}
