use actix_cluster::prelude::*;

#[cluster_message(result = "u64")]
struct Add(u64);

fn main() {}
