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

/// Puts an item in a cart; replies with the number of items.
#[cluster_message(result = "u32")]
#[derive(Debug, Serialize, Deserialize)]
pub struct AddItem(pub String);

/// A shopping cart: a keyed (virtual) actor, one per cart id in the cluster, whose items
/// are snapshotted to one other node after each message.
#[distributed_actor(messages(AddItem), keyed = "id", recovery = "restart", replicas = 1)]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cart {
    /// The cart's key.
    pub id: String,
    /// What is in it.
    pub items: Vec<String>,
}

impl Handler<AddItem> for Cart {
    type Result = u32;
    fn handle(&mut self, AddItem(item): AddItem, _: &mut Context<Self>) -> u32 {
        self.items.push(item);
        println!("  [{}] {} now holds {} item(s)", node_name(), self.id, self.items.len());
        self.items.len() as u32
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

/// One unit of work for a [`Paced`] actor.
#[cluster_message(result = "()")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Work {
    /// Sequence number, from 0, per sender.
    pub seq: u64,
    /// Filler.
    pub body: Vec<u8>,
}

/// Reads what a [`Paced`] actor has handled: (messages, messages out of order or missing).
#[cluster_message(result = "(u64, u64)")]
#[derive(Debug, Serialize, Deserialize)]
pub struct PacedStats;

/// An actor that handles at most `rate` work items per second, on schedule, one at a time
/// (each waits for its slot without blocking the thread), and checks they arrive in order.
#[distributed_actor(messages(Work, PacedStats))]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Paced {
    /// Items per second.
    pub rate: u64,
    /// Items handled.
    pub handled: u64,
    /// Items whose sequence number was not the next one expected.
    pub out_of_order: u64,
    #[serde(skip)]
    started: Option<actix_cluster::rt::time::Instant>,
}

impl Paced {
    /// An actor handling `rate` items per second.
    pub fn new(rate: u64) -> Self {
        Self { rate, ..Self::default() }
    }
}

impl Handler<Work> for Paced {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, msg: Work, _: &mut Context<Self>) -> Self::Result {
        if msg.seq != self.handled {
            self.out_of_order += 1;
        }
        let started = *self.started.get_or_insert_with(actix_cluster::rt::time::Instant::now);
        let slot = started + Duration::from_micros(1_000_000 * self.handled / self.rate.max(1));
        self.handled += 1;
        AtomicResponse::new(Box::pin(actix_cluster::rt::time::sleep_until(slot).into_actor(self)))
    }
}

impl Handler<PacedStats> for Paced {
    type Result = MessageResult<PacedStats>;
    fn handle(&mut self, _: PacedStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.handled, self.out_of_order))
    }
}

/// A keyed counter whose count is snapshotted to one other node after each message.
#[distributed_actor(messages(Add, Get), keyed = "key", recovery = "restart", replicas = 1)]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    /// The key.
    pub key: String,
    /// The running total.
    pub total: u64,
}

impl Handler<Add> for Tally {
    type Result = u64;
    fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
        self.total += msg.0;
        self.total
    }
}

impl Handler<Get> for Tally {
    type Result = u64;
    fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
        self.total
    }
}

/// Asks a node's [`Inspector`] for its recovery figures: (actors hosted with replicas, of
/// which unconfirmed, replicas held, actors recovered).
#[cluster_message(result = "(u64, u64, u64, u64)")]
#[derive(Debug, Serialize, Deserialize)]
pub struct RecoveryFigures;

/// Reports figures of the node it runs on (spawned there by a test).
#[distributed_actor(messages(RecoveryFigures))]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Inspector;

impl Handler<RecoveryFigures> for Inspector {
    type Result = ResponseFuture<(u64, u64, u64, u64)>;
    fn handle(&mut self, _: RecoveryFigures, _: &mut Context<Self>) -> Self::Result {
        Box::pin(async move {
            let Some(system) = ClusterSystem::current() else { return (0, 0, 0, 0) };
            let s = system.recovery().stats().await;
            (s.hosted as u64, s.unconfirmed as u64, s.held as u64, s.recovered)
        })
    }
}

/// A tick published to the topic of one delivery guarantee (the `broker` example).
#[cluster_message(result = "()")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    /// Its number, from 0, per topic.
    pub n: u64,
}

/// Asks a [`TickStats`] what this process's tickers handled: per topic, (ticks handled,
/// distinct ticks, ticks handled after a higher one).
#[cluster_message(result = "std::collections::BTreeMap<String, (u64, u64, u64)>")]
#[derive(Debug, Serialize, Deserialize)]
pub struct TickCounts;

/// The topics of the `broker` example, one per guarantee.
pub const TICK_TOPICS: [&str; 6] =
    ["at-most-once", "at-least-once", "exactly-once", "ordered", "causal", "transactional"];

/// What this process's tickers handled, per topic, in order.
static TICKS: std::sync::Mutex<std::collections::BTreeMap<String, Vec<u64>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A subscriber of one topic (a plain actix actor): records each tick it handles.
pub struct Ticker {
    /// The node it runs on.
    pub system: actix_cluster::ClusterSystem,
    /// Its topic.
    pub topic: &'static str,
}

impl Actor for Ticker {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.system.broker().subscribe::<Tick, Self>(ctx, Some(self.topic));
    }
}

impl Handler<Tick> for Ticker {
    type Result = ();
    fn handle(&mut self, t: Tick, _: &mut Context<Self>) {
        TICKS.lock().unwrap_or_else(|e| e.into_inner()).entry(self.topic.to_owned()).or_default().push(t.n);
    }
}

/// Reports what the tickers of its process handled.
#[distributed_actor(messages(TickCounts))]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TickStats;

impl Handler<TickCounts> for TickStats {
    type Result = MessageResult<TickCounts>;
    fn handle(&mut self, _: TickCounts, _: &mut Context<Self>) -> Self::Result {
        let ticks = TICKS.lock().unwrap_or_else(|e| e.into_inner());
        let counts = ticks
            .iter()
            .map(|(topic, ns)| {
                let distinct = ns.iter().collect::<std::collections::BTreeSet<_>>().len() as u64;
                let late = ns.windows(2).filter(|w| w[1] < w[0]).count() as u64;
                (topic.clone(), (ns.len() as u64, distinct, late))
            })
            .collect();
        MessageResult(counts)
    }
}
