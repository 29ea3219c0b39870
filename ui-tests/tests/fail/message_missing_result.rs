use actix_cluster::prelude::*;

#[cluster_message]
#[derive(Serialize, Deserialize)]
struct Ping;

#[cluster_message(name = "shop.Pong")]
#[derive(Serialize, Deserialize)]
struct Pong;

fn main() {}
