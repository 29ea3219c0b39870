use actix_cluster::prelude::*;

struct Opaque;

#[cluster_message(result = "Opaque")]
#[derive(Serialize, Deserialize)]
struct Fetch;

fn main() {}
