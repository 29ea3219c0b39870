//! A cluster node process with the example actors registered.
//!
//! `cluster-node --name node-2 --bind 127.0.0.1:0 --seeds 127.0.0.1:7001 [--cluster demo]`

use actix_cluster_examples::node::{self, NodeArgs};

fn main() {
    node::init_logging();
    let args = match NodeArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cluster-node: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = actix_cluster::rt::System::new().block_on(node::run(args)) {
        eprintln!("cluster-node: {e}");
        std::process::exit(1);
    }
}
