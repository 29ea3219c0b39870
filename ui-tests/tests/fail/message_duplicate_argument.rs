use actix_cluster::prelude::*;

#[cluster_message(result = "u64", name = "a", result = "u32")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

fn main() {}
