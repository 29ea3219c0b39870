//! A handle whose actor is still being started where its placement says: what
//! `start_distributed()` returns for a type placed on other nodes. Tells sent meanwhile
//! wait in order and go out once the actor runs; asks, awaiting tells and stops wait for
//! the start. If it fails, every call through the handle fails with
//! [`ClusterError::NotStarted`].
//!
//! Generic over the started handle `T` (an `ActorRef`), which builds the waiting tells.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use crate::error::ClusterError;

/// What a deferred start came to.
pub(crate) type Started<T> = Result<T, Arc<ClusterError>>;

/// A tell waiting for the actor to start: sends itself through the started handle.
pub(crate) type Waiting<T> = Box<dyn FnOnce(T) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The shared state of every clone of a deferred handle.
pub(crate) struct Deferred<T> {
    /// The actor type's name, for the log.
    actor: &'static str,
    /// Set once the start is over and every tell queued before it has gone out.
    started: OnceLock<Started<T>>,
    /// Tells sent before the start was over, in order.
    waiting: Mutex<Vec<Waiting<T>>>,
    /// Woken when `started` is set.
    done: Notify,
}

impl<T: Clone> Deferred<T> {
    pub(crate) fn new(actor: &'static str) -> Self {
        Self { actor, started: OnceLock::new(), waiting: Mutex::new(Vec::new()), done: Notify::new() }
    }

    /// A start that is already over.
    pub(crate) fn finished(actor: &'static str, outcome: Started<T>) -> Self {
        let d = Self::new(actor);
        let _ = d.started.set(outcome);
        d
    }

    /// The outcome, if the start is over.
    pub(crate) fn get(&self) -> Option<&Started<T>> {
        self.started.get()
    }

    /// Waits for the start to be over.
    pub(crate) async fn wait(&self) -> &Started<T> {
        loop {
            let woken = self.done.notified();
            if let Some(started) = self.started.get() {
                return started;
            }
            woken.await;
        }
    }

    /// Queues the tell `job` builds, after every tell queued before it, if the start is
    /// not over; otherwise does not call `job` and answers the outcome.
    pub(crate) fn queue_unless_started(&self, job: impl FnOnce() -> Waiting<T>) -> Option<&Started<T>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match self.started.get() {
            None => {
                waiting.push(job());
                None
            }
            started => started,
        }
    }

    /// Ends the start: sends the tells that waited, in order (the ones queued while they
    /// go out too), then records `outcome` and wakes every waiter.
    pub(crate) async fn finish(&self, outcome: Started<T>) {
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
                    actor = self.actor, lost = batch.len(), error = %cause,
                    "the actor could not be started; the tells sent to it meanwhile are lost"
                ),
            }
        }
        self.done.notify_waiters();
    }
}
