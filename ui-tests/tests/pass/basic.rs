//! A crate of actors that depends on `actix-cluster` alone.
use std::time::Duration;

use actix_cluster::prelude::*;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[cluster_message(result = "Vec<String>")]
#[derive(Serialize, Deserialize)]
enum Query {
    All,
    Prefix(String),
}

#[distributed_actor(messages(Add, Query))]
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
    names: Vec<String>,
}

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.total += msg.0;
        self.total
    }
}

impl Handler<Query> for Counter {
    type Result = MessageResult<Query>;
    fn handle(&mut self, q: Query, _: &mut Context<Self>) -> Self::Result {
        MessageResult(match q {
            Query::All => self.names.clone(),
            Query::Prefix(p) => self.names.iter().filter(|n| n.starts_with(&p)).cloned().collect(),
        })
    }
}

async fn run() -> Result<u64, ClusterError> {
    let config = ClusterConfig::new()
        .node_name("node-1")
        .bind("127.0.0.1:0")
        .architecture(Architecture::Decentralized)
        .discovery(DiscoveryMethod::Gossip)
        .seed_nodes(["127.0.0.1:7002"])
        .build()?;
    let system = ClusterSystem::new("shop", config).start().await?;
    let local: ActorRef<Counter> = Counter::default().start_distributed();
    let remote: ActorRef<Counter> = system.remote_actor::<Counter>("node-2").await?;
    local.do_send(Add(1))?;
    remote.tell(Add(2)).await?;
    let _names: Vec<String> = remote.send(Query::All).await?;
    let total = remote.send_timeout(Add(3), Duration::from_secs(1)).await?;
    if let Some(r) = remote.remote_addr() {
        let _: u64 = r.send(Add(0)).await?;
    }
    system.shutdown().await;
    Ok(total)
}

fn main() {
    let _ = run;
    assert_ne!(<Add as ClusterMessage>::WIRE_ID, <Query as ClusterMessage>::WIRE_ID);
}
