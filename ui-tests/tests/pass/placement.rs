use actix_cluster::prelude::*;

#[distributed_actor(messages(), placement = "least_loaded")]
#[derive(Default, Serialize, Deserialize)]
struct Balanced;

#[distributed_actor(messages(), placement = "role:gpu")]
#[derive(Default, Serialize, Deserialize)]
struct OnGpu;

#[distributed_actor(messages(), placement = "node:node-2")]
#[derive(Default, Serialize, Deserialize)]
struct Pinned;

#[distributed_actor(messages(), placement = "custom:nearest")]
#[derive(Default, Serialize, Deserialize)]
struct Custom;

fn main() {
    assert_eq!(Custom::placement(), Placement::Custom("nearest".into()));
    assert_eq!(Balanced::placement(), Placement::LeastLoaded);
    assert_eq!(OnGpu::placement(), Placement::Role("gpu".into()));
    assert_eq!(Pinned::placement(), Placement::Node("node-2".into()));
}
