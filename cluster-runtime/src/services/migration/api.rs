//! `system.migrate(&actor, "node-3")`: moving a running actor to another node.

use tokio::sync::{mpsc, oneshot};

use crate::actor::DistributedActor;
use crate::error::ClusterError;
use crate::handle::ActorRef;
use crate::node::service::{Cx, Input};
use crate::node::system::ClusterSystem;
use crate::proto::migration::MigrationError;
use crate::proto::wire::channel::Channel;
use crate::services::migration::{MigrationService, Step};
use crate::services::registry::RegistryService;

impl ClusterSystem {
    /// Moves `actor`, which runs on this node, to node `to`, and returns a handle to it
    /// there. Messages sent meanwhile wait and reach it at the new node in order; handles
    /// to the old location keep working (what reaches the old node is forwarded for
    /// `migration.grace`, then they find the actor through the registry). The actor's state
    /// crosses as its type serializes it (`Serialize`/`Deserialize`), in mailbox order, so
    /// everything it handled before is in it.
    ///
    /// If the target refuses, does not answer in time (`migration.timeout`) or is lost, or
    /// the directory no longer names the actor here, the actor keeps running here with the
    /// messages sent meanwhile, and this fails with [`ClusterError::Migration`].
    pub async fn migrate<A: DistributedActor>(
        &self,
        actor: &ActorRef<A>,
        to: &str,
    ) -> Result<ActorRef<A>, ClusterError> {
        let Some((identity, from)) = actor.hosted_here(self) else {
            return Err(MigrationError::NotHere.into());
        };
        if to == self.node_name() {
            return Ok(actor.clone());
        }
        if self.node.life.is_shut_down() {
            return Err(ClusterError::Shutdown);
        }
        let (steps_tx, mut steps) = mpsc::unbounded_channel();
        let start_from = from.clone();
        let to_node = to.to_owned();
        let id = self
            .call_migration(move |m, cx| m.start(cx, identity, start_from, &to_node, steps_tx))
            .await
            .ok_or(ClusterError::Shutdown)??;
        // In mailbox order: everything delivered before the hold is in the state.
        let state = match self.node.actors.take_state(&self.node.types, from.actor) {
            Some(taking) => taking.await,
            None => Err("the actor stopped".to_owned()),
        };
        self.post_migration(move |m, cx| m.snapshot(cx, id, state));
        loop {
            match steps.recv().await {
                Some(Step::Swap { to }) => {
                    let (tx, rx) = oneshot::channel();
                    let actor_id = from.actor;
                    self.post_registry(move |r, cx| r.move_out(cx, actor_id, to, tx));
                    let swapped = rx.await.unwrap_or(Err(crate::proto::registry::record::Refusal::Timeout));
                    self.post_migration(move |m, cx| m.swapped(cx, id, swapped));
                }
                Some(Step::Done(Ok(location))) => return Ok(self.handle_at(identity, location)),
                Some(Step::Done(Err(e))) => return Err(e.into()),
                None => return Err(ClusterError::Shutdown),
            }
        }
    }

    async fn call_migration<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut MigrationService, &mut Cx<'_>) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.post_migration(move |m, cx| {
            let _ = tx.send(f(m, cx));
        });
        rx.await.ok()
    }

    fn post_migration(&self, f: impl FnOnce(&mut MigrationService, &mut Cx<'_>) + Send + 'static) {
        self.node.to_control(Input::Call(
            Channel::MIGRATION,
            Box::new(move |service, cx| {
                if let Some(m) = service.as_any_mut().downcast_mut::<MigrationService>() {
                    f(m, cx);
                }
            }),
        ));
    }

    fn post_registry(&self, f: impl FnOnce(&mut RegistryService, &mut Cx<'_>) + Send + 'static) {
        self.node.to_control(Input::Call(
            Channel::REGISTRY,
            Box::new(move |service, cx| {
                if let Some(r) = service.as_any_mut().downcast_mut::<RegistryService>() {
                    f(r, cx);
                }
            }),
        ));
    }
}
