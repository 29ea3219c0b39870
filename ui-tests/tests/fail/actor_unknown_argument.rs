use actix_cluster::prelude::*;

#[distributed_actor(messages(), placement = "random", format = "bincode")]
#[derive(Default, Serialize, Deserialize)]
struct Counter;

fn main() {}
