use actix_cluster::prelude::*;

#[cluster_message(result = 42, name = "")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[cluster_message(result = "not a type!")]
#[derive(Serialize, Deserialize)]
struct Sub(u64);

fn main() {}
