use actix_cluster::prelude::*;

// Without replicas a restarted actor starts from `Default`, which this type lacks.
#[distributed_actor(messages(), recovery = "restart")]
#[derive(Serialize, Deserialize)]
struct Ledger {
    entries: Vec<u64>,
}

fn main() {}
