//! `system.migrate(&actor, "node-3")`: moving a running actor to another node.

use tokio::sync::oneshot;

use crate::actor::DistributedActor;
use crate::error::{ClusterError, MigrationError};
use crate::handle::ActorRef;
use crate::node::service::{Cx, Input};
use crate::node::system::ClusterSystem;
use crate::proto::wire::channel::Channel;
use crate::services::migration::{Done, MigrationService};

impl ClusterSystem {
    /// Moves `actor` to node `to` and returns a handle to it there. Called on the node the
    /// actor runs on, or on any other (which asks that node). Messages sent meanwhile wait
    /// and reach it at the new node in order; handles to the old location keep working
    /// (what reaches the old node is forwarded for `migration.grace`, then they find the
    /// actor through the registry). The actor's state crosses as its type serializes it, in
    /// mailbox order, so everything it handled before is in it.
    ///
    /// If the target refuses, does not answer in time (`migration.timeout`) or is lost, or
    /// the directory no longer names the actor where it was, the actor keeps running there
    /// with the messages sent meanwhile, and this fails with [`ClusterError::Migration`].
    pub async fn migrate<A: DistributedActor>(
        &self,
        actor: &ActorRef<A>,
        to: &str,
    ) -> Result<ActorRef<A>, ClusterError> {
        if self.node.life.is_shut_down() {
            return Err(ClusterError::Shutdown);
        }
        let (tx, rx) = oneshot::channel();
        let to_node = to.to_owned();
        match actor.hosted_here(self) {
            Some((identity, from)) => {
                self.post_migration(move |m, cx| m.start(cx, identity, from, &to_node, Done::Api(tx)));
            }
            None => {
                let (Some(identity), Some(at)) = (actor.running_identity(), actor.location()) else {
                    return Err(MigrationError::NotHere.into());
                };
                self.post_migration(move |m, cx| m.request(cx, &at.node, at.actor, identity, &to_node, tx));
            }
        }
        let location = rx.await.map_err(|_| ClusterError::Shutdown)??;
        let identity = actor.running_identity().ok_or(MigrationError::NotHere)?;
        let moved = self.handle_at(identity, location);
        actor.note_moved(&moved);
        Ok(moved)
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
}
