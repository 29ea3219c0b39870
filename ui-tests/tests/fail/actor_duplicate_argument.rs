use actix_cluster::prelude::*;

#[distributed_actor(format = "json", format = "postcard", manual_actor = true)]
#[derive(Default, Serialize, Deserialize)]
struct Counter;

fn main() {}
