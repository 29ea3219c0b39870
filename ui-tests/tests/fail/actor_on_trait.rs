use actix_cluster::prelude::*;

#[distributed_actor]
trait Shop {}

fn main() {}
