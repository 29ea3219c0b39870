//! Actors and helpers shared by the example programs, the process-level tests and the
//! benchmark: a counter, a greeter, a benchmark sink, a node runner and child-process control.

pub mod node;

use std::sync::OnceLock;
use std::time::Duration;

use actix_cluster::prelude::*;

static NODE_NAME: OnceLock<String> = OnceLock::new();

/// Records this process's node name, for the lines actors print.
pub fn set_node_name(name: &str) {
    let _ = NODE_NAME.set(name.to_owned());
}

/// This process's node name (empty until set).
pub fn node_name() -> &'static str {
    NODE_NAME.get().map(String::as_str).unwrap_or("")
}

/// Adds to a counter; replies with the new total.
#[cluster_message(result = "u64")]
#[derive(Debug, Serialize, Deserialize)]
pub struct Add(pub u64);

/// Reads a counter's total.
#[cluster_message(result = "u64")]
#[derive(Debug, Serialize, Deserialize)]
pub struct Get;

/// Replies with the total after waiting `millis` milliseconds (a slow request).
#[cluster_message(result = "u64")]
#[derive(Debug, Serialize, Deserialize)]
pub struct SlowGet {
    /// How long the handler waits before replying.
    pub millis: u64,
}

/// A counter that can live on any node.
#[distributed_actor(messages(Add, Get, SlowGet))]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    /// The running total.
    pub total: u64,
    /// Print a line for every message received (for the demo).
    pub verbose: bool,
}

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.total += msg.0;
        if self.verbose {
            println!("  [{}] Counter received Add({}) -> total {}", node_name(), msg.0, self.total);
        }
        self.total
    }
}

impl Handler<Get> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
        self.total
    }
}

impl Handler<SlowGet> for Counter {
    type Result = ResponseActFuture<Self, u64>;
    fn handle(&mut self, msg: SlowGet, _: &mut Context<Self>) -> Self::Result {
        Box::pin(
            actix_cluster::rt::time::sleep(Duration::from_millis(msg.millis)).into_actor(self).map(|(), a, _| a.total),
        )
    }
}

/// Asks a greeter for a greeting.
#[cluster_message(result = "String", name = "examples.Greet")]
#[derive(Debug, Serialize, Deserialize)]
pub struct Greet {
    /// Whom to greet.
    pub name: String,
}

/// A greeter whose messages and state travel as JSON.
#[distributed_actor(messages(Greet), format = "json", name = "examples.Greeter")]
#[derive(Debug, Serialize, Deserialize)]
pub struct Greeter {
    /// The greeting word.
    pub greeting: String,
}

impl Handler<Greet> for Greeter {
    type Result = String;
    fn handle(&mut self, msg: Greet, _: &mut Context<Self>) -> String {
        println!("  [{}] Greeter greets {}", node_name(), msg.name);
        format!("{}, {}! (from {})", self.greeting, msg.name, node_name())
    }
}

/// The benchmark payload: a sequence number and a body.
#[cluster_message(result = "()")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    /// Sequence number.
    pub seq: u64,
    /// Body (32 bytes in the benchmark).
    pub body: String,
}

/// Echoes a payload's sequence number (the benchmark's ask).
#[cluster_message(result = "u64")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo(pub Payload);

/// Reads how many payloads a sink has received.
#[cluster_message(result = "u64")]
#[derive(Debug, Serialize, Deserialize)]
pub struct Count;

/// Counts payloads (the benchmark's receiver).
#[distributed_actor(messages(Payload, Echo, Count))]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sink {
    /// Payloads received.
    pub received: u64,
}

impl Handler<Payload> for Sink {
    type Result = ();
    fn handle(&mut self, _: Payload, _: &mut Context<Self>) {
        self.received += 1;
    }
}

impl Handler<Echo> for Sink {
    type Result = u64;
    fn handle(&mut self, msg: Echo, _: &mut Context<Self>) -> u64 {
        msg.0.seq
    }
}

impl Handler<Count> for Sink {
    type Result = u64;
    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> u64 {
        self.received
    }
}
