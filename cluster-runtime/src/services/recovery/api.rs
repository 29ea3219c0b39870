//! `system.recovery()`: figures about snapshots and replicas, and the claim a keyed
//! activation makes for its key's replica.

use tokio::sync::oneshot;

use crate::ids::ActorId;
use crate::node::service::{Cx, Input};
use crate::node::system::ClusterSystem;
use crate::proto::snapshot::ClaimAnswer;
use crate::proto::wire::channel::Channel;
use crate::services::recovery::{RecoveryService, RecoveryStats};

/// Recovery on this node: see [`ClusterSystem::recovery`].
#[derive(Debug, Clone, Copy)]
pub struct Recovery<'a> {
    system: &'a ClusterSystem,
}

impl ClusterSystem {
    /// Recovery on this node: actors of types with `recovery = "restart"` keep replicas
    /// (their latest snapshot, with `replicas = N`) on other nodes, and are re-created on
    /// a surviving node when theirs is marked down.
    pub fn recovery(&self) -> Recovery<'_> {
        Recovery { system: self }
    }
}

impl Recovery<'_> {
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut RecoveryService, &mut Cx<'_>) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.system.node.to_control(Input::Call(
            Channel::RECOVERY,
            Box::new(move |service, cx| {
                if let Some(s) = service.as_any_mut().downcast_mut::<RecoveryService>() {
                    let _ = tx.send(f(s, cx));
                }
            }),
        ));
        rx.await.ok()
    }

    /// How many actors this node hosts with replicas, how many of those have state not yet
    /// confirmed by every holder, how many replicas it holds, and how many actors it
    /// re-created. Zeros once the node has stopped.
    pub async fn stats(&self) -> RecoveryStats {
        self.call(|s, _| s.stats()).await.unwrap_or_default()
    }

    /// Asks node `holder` for the replica of keyed identity `identity`: it runs the key
    /// from it, tells to look again, or has none.
    pub(crate) async fn claim(&self, holder: &str, identity: ActorId) -> ClaimAnswer {
        let holder = holder.to_owned();
        let (tx, rx) = oneshot::channel();
        if self.call(move |s, cx| s.ask_claim(cx, &holder, identity, tx)).await.is_none() {
            return ClaimAnswer::Retry;
        }
        rx.await.unwrap_or(ClaimAnswer::Retry)
    }
}
