use actix_cluster::prelude::*;

#[distributed_actor(messages(), placement = "closest")]
#[derive(Default, Serialize, Deserialize)]
struct Counter;

fn main() {}
