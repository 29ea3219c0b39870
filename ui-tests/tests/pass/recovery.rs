use actix_cluster::__private::{inventory, RecoveryRegistration};
use actix_cluster::prelude::*;

/// Restarts from `Default` when its node is lost.
#[distributed_actor(messages(), recovery = "restart")]
#[derive(Default, Serialize, Deserialize)]
struct Scratch;

/// Keeps its latest state on two other nodes, snapshotted every 500 ms.
#[distributed_actor(messages(), recovery = "restart", replicas = 2, snapshot_every = "500ms")]
#[derive(Serialize, Deserialize)]
struct Ledger {
    entries: Vec<u64>,
}

/// A keyed actor with one replica, snapshotted after each message (no `Default` needed).
#[distributed_actor(messages(), keyed, recovery = "restart", replicas = 1)]
#[derive(Serialize, Deserialize)]
struct Session {
    user: String,
}

impl KeyedActor for Session {
    fn from_key(key: &str) -> Self {
        Session { user: key.to_owned() }
    }
}

/// Says so explicitly.
#[distributed_actor(messages(), recovery = "none")]
#[derive(Serialize, Deserialize)]
struct Scratchpad;

fn policy<A: DistributedActor>() -> Option<(bool, usize, u64, bool)> {
    inventory::iter::<RecoveryRegistration>
        .into_iter()
        .find(|r| r.type_id == A::TYPE_ID)
        .map(|r| (r.restart, r.replicas, r.snapshot_every_ms, r.restart_state.is_some()))
}

fn main() {
    assert_eq!(policy::<Scratch>(), Some((true, 0, 0, true)));
    assert_eq!(policy::<Ledger>(), Some((true, 2, 500, false)));
    assert_eq!(policy::<Session>(), Some((true, 1, 0, false)));
    assert_eq!(policy::<Scratchpad>(), Some((false, 0, 0, false)));
    let _ = (Ledger { entries: vec![] }.entries, Session::from_key("s").user);
}
