//! Forwarding the messages of an actor that moved to another node: the ones held while it
//! moved, then the ones still sent here while the move is remembered. One task per node
//! sends them in order, so a sender's messages reach the new node in the order it sent
//! them, and a marker queued after them (a migration's commit) goes out only after them, on
//! the same link. A forwarded ask's reply is relayed to the asker.

use std::sync::Weak;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{ClusterError, RemoteError, RemoteErrorKind};
use crate::node::actors::{Forward, Parked, Resume};
use crate::node::kernel::Node;
use crate::node::requests::Reply;
use crate::proto::registry::record::ActorLocation;
use crate::proto::wire::fast_path::{encode_message, MessageHead};
use crate::proto::wire::frame::Outcome;

/// The forwarding task of a node.
pub(crate) async fn run(node: Weak<Node>, mut work: mpsc::UnboundedReceiver<Forward>, stopping: CancellationToken) {
    loop {
        let next = tokio::select! {
            biased;
            () = stopping.cancelled() => return,
            next = work.recv() => next,
        };
        let (Some(next), Some(node)) = (next, node.upgrade()) else { return };
        match next {
            Forward::Message { to, parked } => node.forward_one(&to, parked).await,
            Forward::Then(then) => then(),
        }
    }
}

impl Node {
    /// Queues `parked` to be forwarded to `to`, after what is queued already.
    pub(crate) fn forward(&self, to: ActorLocation, parked: Parked) {
        let _ = self.forwarding.send(Forward::Message { to, parked });
    }

    /// Runs `then` once everything queued for forwarding before it has gone out.
    pub(crate) fn after_forwarded(&self, then: impl FnOnce() + Send + 'static) {
        let _ = self.forwarding.send(Forward::Then(Box::new(then)));
    }

    async fn forward_one(&self, to: &ActorLocation, parked: Parked) {
        if to.node_id == self.id {
            // The next activation is on this node.
            match self.actors.deliver_parked(&self.types, to.actor, parked) {
                Ok(Some((peer, request, size, reply))) => self.spawn_reply(peer, request, size, reply),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(node = %self.name(), actor = %to.actor, detail = %e.detail, "a forwarded message was not delivered")
                }
            }
            return;
        }
        match parked {
            Parked::Local(send) => send(Resume::There(to)),
            Parked::Tell { message, format, payload, .. } => {
                let frame = encode_message::<()>(MessageHead::Tell { target: to.actor }, message, format, |b| {
                    b.extend_from_slice(&payload);
                    Ok(())
                });
                let Ok(frame) = frame else { return };
                if let Err(e) = self.tell(to.node_id, &to.node, to.actor, frame).await {
                    tracing::warn!(node = %self.name(), to = %to.node, actor = %to.actor, error = %e, "a tell forwarded to a moved actor was lost");
                }
            }
            Parked::Ask { peer, request, message, format, payload, size } => {
                let (forwarded, reply) = self.requests.open(to.node_id);
                let frame = encode_message::<()>(
                    MessageHead::Ask { request: forwarded, target: to.actor },
                    message,
                    format,
                    |b| {
                        b.extend_from_slice(&payload);
                        Ok(())
                    },
                );
                let queued = match (frame, self.peers.sender(to.node_id)) {
                    (Ok(frame), Some(sender)) => sender.send(frame).await.is_ok(),
                    _ => false,
                };
                if !queued {
                    self.requests.forget(forwarded);
                    let e = RemoteError::new(
                        RemoteErrorKind::ForwardFailed,
                        format!("no link to node `{}`, where the actor moved", to.node),
                    );
                    self.send_reply(peer, request, Outcome::Error(e));
                    self.limits.ask_end(peer, size);
                    return;
                }
                // The reply is relayed when it comes; later messages do not wait for it.
                let me = self.me.clone();
                let timeout = self.config.request_timeout();
                let target = to.node.clone();
                self.spawn_task(async move {
                    let answer = tokio::time::timeout(timeout, reply).await;
                    let Some(node) = me.upgrade() else { return };
                    node.limits.ask_end(peer, size);
                    match answer {
                        Ok(Ok(Ok(Reply::Value(bytes)))) => node.send_reply(peer, request, Outcome::Value(&bytes)),
                        Ok(Ok(Err(ClusterError::Remote { error, .. }))) => {
                            node.send_reply(peer, request, Outcome::Error(error));
                        }
                        other => {
                            if other.is_err() {
                                node.requests.forget(forwarded);
                            }
                            let e = RemoteError::new(
                                RemoteErrorKind::ForwardFailed,
                                format!("no answer from node `{target}`, where the actor moved"),
                            );
                            node.send_reply(peer, request, Outcome::Error(e));
                        }
                    }
                });
            }
        }
    }
}
