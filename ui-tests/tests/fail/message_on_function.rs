use actix_cluster::prelude::*;

#[cluster_message(result = "u64")]
fn add() -> u64 {
    1
}

fn main() {}
