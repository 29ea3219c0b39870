use actix_cluster::prelude::*;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Reset;

#[distributed_actor(messages(Add))]
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
}

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.total += msg.0;
        self.total
    }
}

// A Handler exists, but Reset is not listed as a remote message.
impl Handler<Reset> for Counter {
    type Result = ();
    fn handle(&mut self, _: Reset, _: &mut Context<Self>) {
        self.total = 0;
    }
}

async fn use_it(system: ClusterSystem) -> Result<(), ClusterError> {
    let remote = system.remote_actor::<Counter>("node-2").await?;
    remote.send(Reset).await?;
    Ok(())
}

fn main() {
    let _ = use_it;
}
