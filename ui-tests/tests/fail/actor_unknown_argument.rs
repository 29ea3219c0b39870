use actix_cluster::prelude::*;

#[distributed_actor(messages(), supervisor = "one_for_one", format = "bincode")]
#[derive(Default, Serialize, Deserialize)]
struct Counter;

fn main() {}
