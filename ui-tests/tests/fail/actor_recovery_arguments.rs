use actix_cluster::prelude::*;

#[distributed_actor(messages(), replicas = 1)]
#[derive(Default, Serialize, Deserialize)]
struct NoPolicy;

#[distributed_actor(messages(), recovery = "restart", snapshot_every = "1s")]
#[derive(Default, Serialize, Deserialize)]
struct NoReplicas;

#[distributed_actor(messages(), recovery = "resurrect")]
#[derive(Default, Serialize, Deserialize)]
struct UnknownPolicy;

#[distributed_actor(messages(), recovery = "restart", replicas = 1, snapshot_every = "soon")]
#[derive(Default, Serialize, Deserialize)]
struct BadInterval;

#[distributed_actor(messages(), recovery = "restart", replicas = "two")]
#[derive(Default, Serialize, Deserialize)]
struct BadCount;

fn main() {}
