//! Stable names, the JSON format and a hand-written `Actor` impl.
use actix_cluster::prelude::*;

#[cluster_message(result = "String", name = "shop.v1.Greet")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Greet {
    pub name: String,
}

#[distributed_actor(messages(Greet), name = "shop.v1.Greeter", format = "json", manual_actor)]
#[derive(Serialize, Deserialize)]
pub struct Greeter {
    greeting: String,
    #[serde(skip)]
    started: bool,
}

impl Actor for Greeter {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.started = true;
    }
}

impl Handler<Greet> for Greeter {
    type Result = String;
    fn handle(&mut self, msg: Greet, _: &mut Context<Self>) -> String {
        format!("{} {}", self.greeting, msg.name)
    }
}

const ID: u64 = <Greet as ClusterMessage>::WIRE_ID;

fn main() {
    assert_eq!(<Greet as ClusterMessage>::NAME, "shop.v1.Greet");
    assert_eq!(<Greeter as DistributedActor>::NAME, "shop.v1.Greeter");
    assert_eq!(<Greeter as DistributedActor>::format(), Format::Json);
    assert_ne!(ID, 0);
}
