use actix_cluster::prelude::*;

#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Wrapped<T>(T);

fn main() {}
