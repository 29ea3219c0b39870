use actix_cluster::prelude::*;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[distributed_actor(messages(Add))]
#[derive(Default, Serialize, Deserialize)]
struct Counter;

fn main() {}
