//! The cluster registry on live in-process clusters (real loopback links, the harness's
//! fault injection): names resolve from every node, go when their actor or node goes, have
//! one winner after a partition heals, and ownership moves little when a node joins.
//! Handles travel inside messages and find a moved actor again.
//!
//! The figures are printed; run with `--nocapture` to see them. `REGISTRY_NAMES` sets the
//! number of names of the lookup run (10,000 by default).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use actix_cluster::prelude::*;
use actix_cluster::testkit::harness::ClusterTestHarness;
use actix_cluster::{ActorLocation, Architecture, ClusterError, LocalActorId, NameEvent, RegistryError};
use futures_util::future::join_all;

const DEADLINE: Duration = Duration::from_secs(30);

#[cluster_message(result = "String")]
#[derive(Serialize, Deserialize)]
struct WhereAreYou;

/// A tell: counts.
#[cluster_message(result = "()")]
#[derive(Serialize, Deserialize)]
struct Poke;

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Pokes;

#[distributed_actor(messages(WhereAreYou, Poke, Pokes))]
#[derive(Default, Serialize, Deserialize)]
struct Named {
    node: String,
    pokes: u64,
}

impl Handler<Poke> for Named {
    type Result = ();
    fn handle(&mut self, _: Poke, _: &mut Context<Self>) {
        self.pokes += 1;
    }
}

impl Handler<Pokes> for Named {
    type Result = u64;
    fn handle(&mut self, _: Pokes, _: &mut Context<Self>) -> u64 {
        self.pokes
    }
}

impl Handler<WhereAreYou> for Named {
    type Result = String;
    fn handle(&mut self, _: WhereAreYou, _: &mut Context<Self>) -> String {
        self.node.clone()
    }
}

#[distributed_actor(messages())]
#[derive(Default, Serialize, Deserialize)]
struct Other;

/// A reply-to pattern: the asker passes a handle to its own listener.
#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Subscribe(ActorRef<Listener>);

#[cluster_message(result = "u64")]
#[derive(Serialize, Deserialize)]
struct Notify(u64);

#[cluster_message(result = "ActorRef<Listener>")]
#[derive(Serialize, Deserialize)]
struct YourListener;

#[distributed_actor(messages(Subscribe, YourListener))]
#[derive(Default, Serialize, Deserialize)]
struct Publisher {
    #[serde(skip)]
    listeners: Vec<ActorRef<Listener>>,
}

impl Handler<Subscribe> for Publisher {
    type Result = ResponseFuture<u64>;
    fn handle(&mut self, Subscribe(listener): Subscribe, _: &mut Context<Self>) -> Self::Result {
        self.listeners.push(listener.clone());
        // The handle arrived as a working handle: call back through it.
        Box::pin(async move { listener.send(Notify(7)).await.unwrap_or(0) })
    }
}

impl Handler<YourListener> for Publisher {
    type Result = MessageResult<YourListener>;
    fn handle(&mut self, _: YourListener, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.listeners.first().cloned().expect("a listener subscribed"))
    }
}

#[distributed_actor(messages(Notify))]
#[derive(Default, Serialize, Deserialize)]
struct Listener {
    got: u64,
}

impl Handler<Notify> for Listener {
    type Result = u64;
    fn handle(&mut self, Notify(n): Notify, _: &mut Context<Self>) -> u64 {
        self.got += n;
        self.got
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn named(h: &ClusterTestHarness, i: usize) -> ActorRef<Named> {
    h.node(i).spawn_local(Named { node: h.name(i).to_owned(), pokes: 0 })
}

/// Looks `names` up from node `i`, 64 at a time; returns the latencies, checking each name
/// resolves to the node `expect` says.
async fn lookups(h: &ClusterTestHarness, i: usize, names: &[(String, String)], uncached: bool) -> Vec<Duration> {
    let registry = h.node(i).registry();
    let mut took = Vec::with_capacity(names.len());
    for chunk in names.chunks(64) {
        let found = join_all(chunk.iter().map(|(name, host)| async move {
            let start = Instant::now();
            let r = if uncached { registry.lookup_uncached::<Named>(name).await } else { registry.lookup(name).await };
            let took = start.elapsed();
            let r = r
                .unwrap_or_else(|e| panic!("lookup of {name} on node {i}: {e}"))
                .unwrap_or_else(|| panic!("{name} does not resolve on node {i}"));
            assert_eq!(r.node_name(), Some(host.as_str()), "{name}");
            took
        }))
        .await;
        took.extend(found);
    }
    took
}

#[actix_rt::test]
async fn ten_thousand_names_resolve_from_every_node() {
    let h = ClusterTestHarness::start(5).await.expect("harness");
    let n: usize = std::env::var("REGISTRY_NAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let mut names = Vec::with_capacity(n);
    let started = Instant::now();
    let hr = &h;
    // Registered from "random" nodes (a fixed spread), 64 at a time.
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let registered = join_all(chunk.iter().map(|k| {
            let i = (k * 7 + k / 5) % 5;
            let actor = named(hr, i);
            let name = format!("name-{k}");
            async move {
                hr.node(i).registry().register(&name, &actor).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, hr.name(i).to_owned())
            }
        }))
        .await;
        names.extend(registered);
    }
    let registering = started.elapsed();
    let mut uncached = Vec::new();
    let mut cached = Vec::new();
    for i in 0..5 {
        uncached.extend(lookups(&h, i, &names, true).await);
    }
    for i in 0..5 {
        cached.extend(lookups(&h, i, &names, false).await);
    }
    uncached.sort();
    cached.sort();
    let per_node: Vec<usize> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(h.node(i).registry().stats().await.owned);
        }
        v
    };
    assert_eq!(per_node.iter().sum::<usize>(), n, "every name has exactly one owner: {per_node:?}");
    println!(
        "registry: {n} names on 5 nodes registered in {registering:?}; owned per node {per_node:?}; \
         lookups from every node ({} each way): uncached p50 {:?} p99 {:?}, cached p50 {:?} p99 {:?}",
        uncached.len(),
        percentile(&uncached, 0.5),
        percentile(&uncached, 0.99),
        percentile(&cached, 0.5),
        percentile(&cached, 0.99),
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn the_first_writer_keeps_a_name_and_types_are_checked() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let first = named(&h, 0);
    h.node(1).registry().register("svc", &first).await.expect("register a remote actor through its host");
    let second = named(&h, 2);
    match h.node(2).registry().register("svc", &second).await {
        Err(ClusterError::Registry(RegistryError::Taken { name, node, holder })) => {
            assert_eq!((name.as_str(), node.as_str()), ("svc", "node-1"));
            assert_eq!(Some(holder), first.identity());
        }
        other => panic!("{other:?}"),
    }
    match h.node(2).registry().lookup::<Other>("svc").await {
        Err(ClusterError::Registry(RegistryError::WrongType { expected, found, .. })) => {
            assert_eq!((expected.as_str(), found.as_str()), ("registry::Other", "registry::Named"));
        }
        other => panic!("{other:?}"),
    }
    let found = h.node(2).registry().lookup::<Named>("svc").await.expect("lookup").expect("found");
    assert_eq!(found.send(WhereAreYou).await.expect("ask"), "node-1");
    assert!(h.node(2).registry().lookup::<Named>("nobody").await.expect("lookup").is_none());
    // Unregistering is for the holder's node.
    assert!(matches!(
        h.node(2).registry().unregister("svc").await,
        Err(ClusterError::Registry(RegistryError::NotRegisteredHere(_)))
    ));
    h.node(0).registry().unregister("svc").await.expect("unregister");
    for i in 0..3 {
        assert!(h.node(i).registry().lookup::<Named>("svc").await.expect("lookup").is_none(), "node {i}");
    }
    h.node(2).registry().register("svc", &second).await.expect("free again");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_named_spawn_resolves_everywhere_when_it_returns_and_goes_when_the_actor_stops() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let mut watch = h.node(0).registry().watch("cart-7");
    let cart = h
        .node(0)
        .spawn(Named { node: "node-3".into(), pokes: 0 })
        .placement(Placement::Node("node-3".into()))
        .name("cart-7")
        .await
        .expect("spawn");
    assert_eq!(cart.node_name(), Some("node-3"));
    for i in 0..3 {
        let found = h.node(i).registry().lookup::<Named>("cart-7").await.expect("lookup").expect("resolves at once");
        assert_eq!(found.identity(), cart.identity());
    }
    match tokio::time::timeout(DEADLINE, watch.next()).await.expect("event") {
        Some(NameEvent::Registered { location, .. }) => assert_eq!(location.node, "node-3"),
        other => panic!("{other:?}"),
    }
    // A second spawn under the same name fails, and its actor does not linger.
    let before = h.node(1).local_actor_count();
    let again = h.node(0).spawn(Named::default()).placement(Placement::Node("node-2".into())).name("cart-7").await;
    assert!(matches!(again, Err(ClusterError::Registry(RegistryError::Taken { .. }))), "{again:?}");
    assert_eq!(h.node(1).local_actor_count(), before, "the loser was stopped");
    cart.stop().await.expect("stop");
    let deadline = Instant::now() + DEADLINE;
    for i in 0..3 {
        while h.node(i).registry().lookup::<Named>("cart-7").await.expect("lookup").is_some() {
            assert!(Instant::now() < deadline, "cart-7 still resolves on node {i}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(tokio::time::timeout(DEADLINE, watch.next()).await.expect("event"), Some(NameEvent::Unregistered));
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_killed_nodes_names_are_gone_from_every_node_soon_after_it_is_marked_down() {
    let mut h = ClusterTestHarness::start(5).await.expect("harness");
    let names: Vec<String> = (0..200).map(|k| format!("doomed-{k}")).collect();
    for name in &names {
        let actor = named(&h, 3);
        h.node(3).registry().register(name, &actor).await.expect("register");
    }
    let keep = named(&h, 1);
    h.node(1).registry().register("survivor", &keep).await.expect("register");
    // Every node has them cached.
    for i in [0, 1, 2, 4] {
        for name in &names {
            assert!(h.node(i).registry().lookup::<Named>(name).await.expect("lookup").is_some());
        }
    }
    let killed = Instant::now();
    h.kill(3);
    let mut down = Vec::new();
    let mut gone = Vec::new();
    for i in [0, 1, 2, 4] {
        let node = h.node(i).clone();
        let deadline = Instant::now() + DEADLINE;
        while node.membership().up_members().contains("node-4") {
            assert!(Instant::now() < deadline, "node {i} never marked node-4 down");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        down.push(killed.elapsed());
        loop {
            let mut any = false;
            for name in &names {
                any |= node.registry().lookup::<Named>(name).await.expect("lookup").is_some();
            }
            if !any {
                break;
            }
            assert!(Instant::now() < deadline, "node {i} still resolves node-4's names");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gone.push(killed.elapsed());
        assert!(node.registry().lookup::<Named>("survivor").await.expect("lookup").is_some(), "node {i}");
    }
    let detection = *down.iter().max().expect("nodes");
    let removal = *gone.iter().max().expect("nodes");
    println!("registry: node killed; marked down everywhere after {detection:?}, its 200 names gone everywhere after {removal:?}");
    assert!(removal <= detection + Duration::from_secs(2), "names gone {removal:?}, detection {detection:?}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_name_taken_on_both_sides_of_a_partition_has_one_winner_after_it_heals() {
    let h = ClusterTestHarness::start(5).await.expect("harness");
    h.partition(&[0, 1], &[2, 3, 4]);
    h.run_until(DEADLINE, "each side sees only itself up", |h| {
        (0..2).all(|i| h.node(i).membership().up_members().len() == 2)
            && (2..5).all(|i| h.node(i).membership().up_members().len() == 3)
    })
    .await
    .expect("views split");
    let left = named(&h, 0);
    h.node(0).registry().register("leader", &left).await.expect("left side");
    let right = named(&h, 3);
    h.node(3).registry().register("leader", &right).await.expect("right side");
    let mut left_watch = h.node(0).registry().watch("leader");
    let mut right_watch = h.node(3).registry().watch("leader");
    h.heal();
    h.wait_for_stability(DEADLINE).await.expect("views merge");
    let deadline = Instant::now() + DEADLINE;
    let winner = loop {
        let mut seen = BTreeSet::new();
        for i in 0..5 {
            let found = h.node(i).registry().lookup_uncached::<Named>("leader").await.expect("lookup");
            seen.insert(found.and_then(|r| r.identity()));
        }
        if seen.len() == 1 {
            if let Some(Some(winner)) = seen.into_iter().next() {
                break winner;
            }
        }
        assert!(Instant::now() < deadline, "no single winner");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (loser_watch, winner_node) = if Some(winner) == left.identity() {
        (&mut right_watch, "node-1")
    } else {
        assert_eq!(Some(winner), right.identity());
        (&mut left_watch, "node-4")
    };
    let lost = tokio::time::timeout(DEADLINE, async {
        loop {
            match loser_watch.next().await {
                Some(NameEvent::Lost { winner: w, location }) => return (w, location),
                Some(_) => {}
                None => panic!("watch ended"),
            }
        }
    })
    .await
    .expect("the loser's node is told");
    assert_eq!((lost.0, lost.1.node.as_str()), (winner, winner_node));
    println!("registry: partition healed; one winner (on {winner_node}) on all 5 nodes, the loser's node told");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_sixth_node_takes_about_a_sixth_of_the_directory_and_nothing_is_lost() {
    let mut h = ClusterTestHarness::start(6).await.expect("harness");
    h.stop(5).await;
    h.run_until(DEADLINE, "five members", |h| (0..5).all(|i| h.node(i).membership().up_members().len() == 5))
        .await
        .expect("five");
    let n = 3_000;
    let mut names = Vec::new();
    for k in 0..n {
        let i = k % 5;
        let name = format!("svc-{k}");
        h.node(i).registry().register(&name, &named(&h, i)).await.expect("register");
        names.push((name, h.name(i).to_owned()));
    }
    let mut before = BTreeMap::new();
    for (name, _) in &names {
        before.insert(name.clone(), h.node(0).registry().owner_of(name).await.expect("owner"));
    }
    h.restart(5).await.expect("node-6 joins");
    h.wait_for_stability(DEADLINE).await.expect("six");
    let six = h.node(5).membership().up_members();
    h.run_until(DEADLINE, "every node's directory has six owners", |h| {
        (0..6).all(|i| h.node(i).membership().up_members() == six)
    })
    .await
    .expect("six owners");
    let mut moved = 0;
    for (name, owner) in &before {
        let now = h.node(0).registry().owner_of(name).await.expect("owner");
        if now != *owner {
            assert_eq!(now, "node-6", "{name} moved between old members");
            moved += 1;
        }
    }
    let share = moved as f64 / n as f64;
    println!("registry: a 6th node joined; {moved} of {n} names changed owner ({:.1} %)", share * 100.0);
    assert!(share <= 1.0 / 6.0 + 0.05, "moved {share:.3}");
    // Nothing is lost: the newcomer rebuilt its share from the hosts.
    for i in [0, 5] {
        lookups(&h, i, &names, true).await;
    }
    assert_eq!(h.node(5).registry().stats().await.owned, moved, "node-6 holds exactly what moved to it");
    h.shutdown().await;
}

#[actix_rt::test]
async fn handles_cross_the_network_inside_messages_and_replies() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let publisher = h.node(0).remote_actor::<Publisher>("node-2").await.expect("publisher on node-2");
    let listener = h.node(0).spawn_local(Listener::default());
    // node-2 receives a handle to node-1's listener and calls back through it.
    assert_eq!(publisher.send(Subscribe(listener.clone())).await.expect("subscribe"), 7);
    // A handle in a reply: node-3 asks for the listener, and gets a working handle to node-1's.
    let via = h
        .node(2)
        .actor_ref_at::<Publisher>(publisher.identity().expect("identity"), publisher.location().expect("location"));
    let got = via.send(YourListener).await.expect("reply with a handle");
    assert_eq!(got.node_name(), Some("node-1"));
    assert_eq!(got.identity(), listener.identity());
    assert_eq!(got.send(Notify(1)).await.expect("ask through the returned handle"), 8);
    // Back on its own node, the handle is local again.
    let home = h.node(0).actor_ref_at::<Listener>(got.identity().expect("id"), got.location().expect("loc"));
    assert!(home.is_local());
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_handle_to_a_stale_location_finds_the_actor_again_through_the_registry() {
    let h = ClusterTestHarness::start(3).await.expect("harness");
    let real = named(&h, 1);
    h.node(1).registry().register("mover", &real).await.expect("register");
    let identity = real.identity().expect("identity");
    // A handle that believes the actor runs on node-3 (as after a move): node-3 answers that
    // it is not there, and the handle asks the directory where it is.
    let stale = ActorLocation { node: "node-3".into(), node_id: h.node(2).node_id(), actor: LocalActorId(123_456) };
    let handle = h.node(0).actor_ref_at::<Named>(identity, stale);
    assert_eq!(handle.send(WhereAreYou).await.expect("re-resolved"), "node-2");
    // A handle naming an incarnation of node-3 that is gone (as after a restart, with the
    // actor recovered elsewhere): asks and awaiting tells look the actor up before sending.
    let dead = ActorLocation { node: "node-3".into(), node_id: actix_cluster::NodeId(7), actor: LocalActorId(1) };
    let old = h.node(0).actor_ref_at::<Named>(identity, dead.clone());
    old.tell(Poke).await.expect("told where it runs now");
    assert_eq!(old.send(Pokes).await.expect("asked where it runs now"), 1);
    // `do_send` does not wait for a look-up: the message comes back.
    let back = old.do_send(Poke).expect_err("the named incarnation is gone");
    assert!(matches!(back.error, ClusterError::NodeRestarted { .. } | ClusterError::LinkDown { .. }), "{}", back.error);
    let unknown = h.node(0).actor_ref_at::<Named>(actix_cluster::ActorId(43), dead);
    let err = unknown.send(WhereAreYou).await.expect_err("nothing to find");
    assert!(matches!(err, ClusterError::NodeRestarted { .. }), "{err}");
    // An actor the directory does not know stays not found.
    let gone = h.node(0).actor_ref_at::<Named>(
        actix_cluster::ActorId(42),
        ActorLocation { node: "node-3".into(), node_id: h.node(2).node_id(), actor: LocalActorId(77) },
    );
    assert!(matches!(gone.send(WhereAreYou).await, Err(ClusterError::ActorNotFound { .. })));
    h.shutdown().await;
}

#[actix_rt::test]
async fn centralized_workers_resolve_through_the_master_and_re_register_when_it_returns() {
    let mut h = ClusterTestHarness::builder()
        .nodes(4)
        .configure(|_, c| c.architecture(Architecture::Centralized).master_nodes(["node-1"]))
        .start()
        .await
        .expect("harness");
    let svc = named(&h, 1);
    h.node(1).registry().register("svc", &svc).await.expect("register on a worker");
    assert_eq!(h.node(0).registry().stats().await.owned, 1, "the master holds the directory");
    assert_eq!(h.node(2).registry().stats().await.owned, 0, "workers hold none");
    let found = h.node(2).registry().lookup::<Named>("svc").await.expect("lookup").expect("through the master");
    assert_eq!(found.send(WhereAreYou).await.expect("ask"), "node-2");

    // The master goes: workers keep resolving their own entries and what they cached.
    h.kill(0);
    assert!(h.node(1).registry().lookup::<Named>("svc").await.expect("own entry").is_some());
    assert!(h.node(2).registry().lookup::<Named>("svc").await.expect("cached entry").is_some());
    // A new name cannot be agreed on without a master: it waits for one, then fails.
    let late = named(&h, 3);
    let refused = h.node(3).registry().register("late", &late).await;
    assert!(
        matches!(refused, Err(ClusterError::Timeout(_)) | Err(ClusterError::Registry(RegistryError::NoDirectory))),
        "{refused:?}"
    );

    // The master returns (a new incarnation, with an empty directory): the hosts send it
    // their entries again.
    h.restart(0).await.expect("master restarts");
    h.wait_for_stability(DEADLINE).await.expect("one view again");
    let deadline = Instant::now() + DEADLINE;
    while h.node(0).registry().stats().await.owned < 1 {
        assert!(Instant::now() < deadline, "svc was not registered with the returning master");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = h.node(3).registry().lookup_uncached::<Named>("svc").await.expect("lookup").expect("resolves");
    assert_eq!(again.identity(), svc.identity());
    h.node(3).registry().register("late", &late).await.expect("registers with a master up");
    h.shutdown().await;
}
