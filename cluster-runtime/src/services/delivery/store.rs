//! The durable outbox: guaranteed tells kept on disk until confirmed, so that they survive
//! a restart of the sending node ([`DeliveryConfig::outbox_path`](crate::config::DeliveryConfig)).
//!
//! The store sits behind [`OutboxStore`]; the one shipped is [`RedbStore`] (redb: one file,
//! copy-on-write B-trees, checksummed pages, crash-safe commits). Writes go through one
//! writer thread ([`StoreWriter`]) so that the node's control task never waits on the disk:
//! it takes every record queued since its last commit, commits them at once (one `fsync`
//! per batch) and only then reports them stored. A send is accepted once its record is
//! committed.

use std::path::Path;
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::format::Format;
use crate::ids::{ActorId, MessageId, WireId};
use crate::proto::registry::record::ActorLocation;

/// A guaranteed tell as the durable outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// Its id.
    pub(crate) id: MessageId,
    /// The target's identity.
    pub(crate) identity: ActorId,
    /// Where it was last thought to run.
    pub(crate) location: ActorLocation,
    /// The message's type.
    pub(crate) message: WireId,
    /// The payload's format.
    pub(crate) format: Format,
    /// The encoded message.
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
    /// Exactly-once.
    pub(crate) dedup: bool,
    /// Ordered.
    pub(crate) ordered: bool,
    /// Its deadline, in ms since the Unix epoch.
    pub(crate) deadline_ms: Option<u64>,
}

/// Why the durable outbox failed.
#[derive(Debug, thiserror::Error)]
#[error("durable outbox: {0}")]
pub(crate) struct StoreError(String);

impl StoreError {
    fn from(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// One change to the store.
#[derive(Debug)]
pub(crate) enum StoreOp {
    /// Keeps record `key` (its place in sending order).
    Put(u64, Stored),
    /// Forgets record `key` (confirmed, failed or expired).
    Remove(u64),
}

/// Where messages wait for their confirmation across restarts.
pub(crate) trait OutboxStore: Send {
    /// Applies `ops` in one durable commit.
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError>;
    /// Every record kept, in key order.
    fn load(&mut self) -> Result<Vec<(u64, Stored)>, StoreError>;
}

const TABLE: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("outbox");

/// The redb-backed store.
pub(crate) struct RedbStore {
    db: redb::Database,
}

impl RedbStore {
    /// Opens (or creates) the store at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(StoreError::from)?;
        }
        // The previous run of this node in this process may still be letting go of the file.
        let mut tries = 0;
        let db = loop {
            match redb::Database::create(path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if tries < 200 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                opened => break opened.map_err(StoreError::from)?,
            }
        };
        let tx = db.begin_write().map_err(StoreError::from)?;
        tx.open_table(TABLE).map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(Self { db })
    }
}

impl OutboxStore for RedbStore {
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        {
            let mut table = tx.open_table(TABLE).map_err(StoreError::from)?;
            for op in ops {
                match op {
                    StoreOp::Put(key, stored) => {
                        let bytes = postcard::to_allocvec(stored).map_err(StoreError::from)?;
                        table.insert(*key, bytes.as_slice()).map_err(StoreError::from)?;
                    }
                    StoreOp::Remove(key) => {
                        table.remove(*key).map_err(StoreError::from)?;
                    }
                }
            }
        }
        tx.commit().map_err(StoreError::from)
    }

    fn load(&mut self) -> Result<Vec<(u64, Stored)>, StoreError> {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.db.begin_read().map_err(StoreError::from)?;
        let table = tx.open_table(TABLE).map_err(StoreError::from)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(StoreError::from)? {
            let (key, value) = item.map_err(StoreError::from)?;
            match crate::format::postcard_exact::<Stored>(value.value()) {
                Ok(stored) => out.push((key.value(), stored)),
                // A record this version cannot read is left alone, not sent half-understood.
                Err(_) => tracing::error!(key = key.value(), "a durable outbox record does not decode; skipped"),
            }
        }
        Ok(out)
    }
}

/// What the writer thread is asked to do.
enum Job {
    /// Apply `ops`; then `done` (with the outcome).
    Apply(Vec<StoreOp>, Box<dyn FnOnce(Result<(), String>) + Send>),
}

/// The handle to the store's writer thread.
pub(crate) struct StoreWriter {
    jobs: mpsc::Sender<Job>,
}

impl StoreWriter {
    /// Starts the writer thread over `store`.
    pub(crate) fn start(mut store: Box<dyn OutboxStore>) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("outbox-store".into()).spawn(move || {
            while let Ok(first) = queue.recv() {
                // Everything queued meanwhile goes into the same commit.
                let mut batch = vec![first];
                batch.extend(queue.try_iter());
                let mut ops = Vec::new();
                let mut dones = Vec::new();
                for Job::Apply(o, done) in batch {
                    ops.extend(o);
                    dones.push(done);
                }
                let result = store.apply(&ops).map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, "the durable outbox could not commit");
                }
                for done in dones {
                    done(result.clone());
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the durable outbox's writer could not start");
        }
        Self { jobs }
    }

    /// Applies `ops`, then calls `done` from the writer thread.
    pub(crate) fn apply(&self, ops: Vec<StoreOp>, done: Box<dyn FnOnce(Result<(), String>) + Send>) {
        if let Err(mpsc::SendError(Job::Apply(_, done))) = self.jobs.send(Job::Apply(ops, done)) {
            done(Err("the durable outbox's writer stopped".to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{LocalActorId, NodeId};

    fn stored(n: u8) -> Stored {
        Stored {
            id: MessageId(u128::from(n)),
            identity: ActorId(7),
            location: ActorLocation { node: "node-2".into(), node_id: NodeId(9), actor: LocalActorId(3) },
            message: WireId(11),
            format: Format::Postcard,
            payload: vec![n; 4],
            dedup: true,
            ordered: n.is_multiple_of(2),
            deadline_ms: None,
        }
    }

    #[test]
    fn records_survive_reopening_and_removed_ones_do_not() {
        let dir = std::env::temp_dir().join(format!("outbox-test-{}", std::process::id()));
        let path = dir.join("outbox.redb");
        let _ = std::fs::remove_file(&path);
        {
            let mut store = RedbStore::open(&path).expect("open");
            let puts: Vec<StoreOp> = (1..=5).map(|n| StoreOp::Put(u64::from(n), stored(n))).collect();
            store.apply(&puts).expect("put");
            store.apply(&[StoreOp::Remove(2), StoreOp::Remove(4)]).expect("remove");
        }
        let mut store = RedbStore::open(&path).expect("reopen");
        let loaded = store.load().expect("load");
        assert_eq!(loaded, vec![(1, stored(1)), (3, stored(3)), (5, stored(5))]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
