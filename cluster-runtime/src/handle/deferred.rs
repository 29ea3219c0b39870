//! A handle whose actor is still being started where its placement says: what
//! `start_distributed()` returns for a type placed on other nodes. Tells sent meanwhile
//! wait in order and go out once the actor runs; asks, awaiting tells and stops wait for
//! the start. If it fails, every call through the handle fails with
//! [`ClusterError::NotStarted`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use crate::actor::{DistributedActor, RemoteMessage};
use crate::error::ClusterError;
use crate::handle::actor_ref::ActorRef;

/// What a deferred start came to.
pub(crate) type Started<A> = Result<ActorRef<A>, Arc<ClusterError>>;

/// A tell waiting for the actor to start.
type Waiting<A> = Box<dyn FnOnce(ActorRef<A>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The shared state of every clone of a deferred handle.
pub(crate) struct Deferred<A: DistributedActor> {
    /// Set once the start is over and every tell queued before it has gone out.
    started: OnceLock<Started<A>>,
    /// Tells sent before the start was over, in order.
    waiting: Mutex<Vec<Waiting<A>>>,
    /// Woken when `started` is set.
    done: Notify,
}

impl<A: DistributedActor> Deferred<A> {
    pub(crate) fn new() -> Self {
        Self { started: OnceLock::new(), waiting: Mutex::new(Vec::new()), done: Notify::new() }
    }

    /// The outcome, if the start is over.
    pub(crate) fn get(&self) -> Option<&Started<A>> {
        self.started.get()
    }

    /// Waits for the start to be over.
    pub(crate) async fn wait(&self) -> &Started<A> {
        loop {
            let woken = self.done.notified();
            if let Some(started) = self.started.get() {
                return started;
            }
            woken.await;
        }
    }

    /// Tells `msg` once the actor runs, after every tell queued before it; sends at once
    /// if the start is already over.
    pub(crate) fn tell_when_started<M: RemoteMessage<A>>(&self, msg: M) -> Result<(), (ClusterError, M)> {
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if self.started.get().is_none() {
                waiting.push(Box::new(move |actor: ActorRef<A>| {
                    Box::pin(async move {
                        if let Err(e) = actor.tell(msg).await {
                            tracing::warn!(actor = A::NAME, message = M::NAME, error = %e, "a tell sent while the actor was starting was lost");
                        }
                    })
                }));
                return Ok(());
            }
        }
        match self.started.get() {
            Some(Ok(actor)) => actor.do_send(msg).map_err(|e| (e.error, e.message)),
            Some(Err(cause)) => Err((not_started::<A>(cause), msg)),
            None => unreachable!("checked under the lock"),
        }
    }

    /// Ends the start: sends the tells that waited, in order (the ones queued while they
    /// go out too), then records `outcome` and wakes every waiter.
    pub(crate) async fn finish(&self, outcome: Started<A>) {
        loop {
            let batch = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                if waiting.is_empty() {
                    // Under the lock: a tell either made it into a batch or sees the outcome.
                    let _ = self.started.set(outcome);
                    break;
                }
                std::mem::take(&mut *waiting)
            };
            match &outcome {
                Ok(actor) => {
                    for tell in batch {
                        tell(actor.clone()).await;
                    }
                }
                Err(cause) => tracing::warn!(
                    actor = A::NAME, lost = batch.len(), error = %cause,
                    "the actor could not be started; the tells sent to it meanwhile are lost"
                ),
            }
        }
        self.done.notify_waiters();
    }
}

/// The error every call through a handle whose start failed returns.
pub(crate) fn not_started<A: DistributedActor>(cause: &Arc<ClusterError>) -> ClusterError {
    ClusterError::NotStarted { actor: A::NAME.to_owned(), cause: cause.clone() }
}
