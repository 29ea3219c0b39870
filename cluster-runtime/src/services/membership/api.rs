//! `system.membership()`: the members this node knows, subscriptions to membership events,
//! and a watch of the table.

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::Recipient;
use tokio::sync::watch;

use crate::node::service::Input;
use crate::node::system::ClusterSystem;
use crate::proto::membership::{Member, MemberStatus, MembershipEvent};
use crate::proto::wire::channel::Channel;
use crate::services::membership::{MembershipService, MembershipShared};

/// The membership table as of one change.
#[derive(Debug, Clone, Default)]
pub struct MembersSnapshot {
    /// Increases with every change.
    pub version: u64,
    /// Every member this node knows, itself included, sorted by name.
    pub members: Arc<Vec<Member>>,
    /// The failure detector's own view, for diagnostics.
    pub describe: Arc<String>,
}

/// The membership API of a node; see [`ClusterSystem::membership`].
#[derive(Debug)]
pub struct Membership<'a> {
    system: &'a ClusterSystem,
    shared: Arc<MembershipShared>,
}

impl ClusterSystem {
    /// Membership: the members this node knows, events, a watch.
    pub fn membership(&self) -> Membership<'_> {
        let shared = self.node.shared::<MembershipShared>().unwrap_or_default();
        Membership { system: self, shared }
    }
}

impl Membership<'_> {
    /// Every member this node knows, itself included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.shared.snapshot.borrow().members.to_vec()
    }

    /// The member of that name, if known.
    pub fn member(&self, name: &str) -> Option<Member> {
        self.shared.snapshot.borrow().members.iter().find(|m| m.name == name).cloned()
    }

    /// Names of the members currently `Up` (this node included).
    pub fn up_members(&self) -> BTreeSet<String> {
        let snapshot = self.shared.snapshot.borrow();
        snapshot.members.iter().filter(|m| m.status == MemberStatus::Up).map(|m| m.name.clone()).collect()
    }

    /// Subscribes an actor to membership events. It first receives a `MemberUp` for every
    /// member currently up (the current state), then every change.
    pub fn subscribe(&self, subscriber: Recipient<MembershipEvent>) {
        self.system.node.to_control(Input::Call(
            Channel::MEMBERSHIP,
            Box::new(move |service, _| {
                if let Some(m) = service.as_any_mut().downcast_mut::<MembershipService>() {
                    m.subscribe(subscriber);
                }
            }),
        ));
    }

    /// A receiver of the table's snapshots; it changes with every change of the table.
    pub fn watch(&self) -> watch::Receiver<MembersSnapshot> {
        self.shared.snapshot.subscribe()
    }

    /// The failure detector's own view, for diagnosing tests.
    pub fn describe(&self) -> String {
        self.shared.snapshot.borrow().describe.to_string()
    }
}
