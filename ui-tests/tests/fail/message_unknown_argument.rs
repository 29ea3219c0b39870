use actix_cluster::prelude::*;

#[cluster_message(result = "u64", reply = "u64")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

fn main() {}
