use actix_cluster::prelude::*;

#[distributed_actor]
#[derive(Default)]
struct Counter;

fn main() {}
