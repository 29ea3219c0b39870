//! Where a new actor goes: a pure function of the members that are up (with their roles and
//! latest resource reports), the request, a little state (the round-robin position) and an
//! injected RNG.

use rand::Rng;
use serde::{Deserialize, Serialize};

pub use crate::error::PlacementError;
use crate::format::{postcard_exact, Inexact};
use crate::proto::membership::ResourceReport;
use crate::proto::registry::ring;

/// Where a new actor of a type goes when it is spawned through the cluster
/// (`system.spawn::<A>(state)`): set per type with `#[distributed_actor(placement = "...")]`,
/// or per call on the spawn builder.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Placement {
    /// On the node that spawns it (`"local"`).
    #[default]
    Local,
    /// On the named node (`"node:<name>"`).
    Node(String),
    /// On a node with this role, in turn (`"role:<role>"`).
    Role(String),
    /// On each member in turn (`"round_robin"`).
    RoundRobin,
    /// On a member drawn at random (`"random"`).
    Random,
    /// On the less loaded of two members drawn at random, from their resource reports
    /// (`"least_loaded"`).
    LeastLoaded,
    /// On the member that owns the spawn's key on the ring, the same from every node
    /// (`"consistent_hash"`; the spawn gives the key).
    ConsistentHash,
    /// By the user-defined policy registered under this name in the configuration
    /// (`"custom:<name>"`).
    Custom(String),
}

/// A member that can host actors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its latest resource report, if any arrived.
    pub load: Option<ResourceReport>,
}

impl Candidate {
    /// How loaded the member is: actors plus requests in flight (a member without a report
    /// counts as idle).
    pub fn load_score(&self) -> u64 {
        self.load.map_or(0, |r| r.actor_count + r.in_flight)
    }
}

/// What placement remembers between decisions.
#[derive(Debug, Clone, Default)]
pub struct PlacementState {
    next: u64,
}

/// Chooses the member for a new actor placed by `placement` (with the spawn's `key`, which
/// consistent hashing needs). `local` is the asking node; `members` are the up members (the
/// asking node among them), in any order. `Custom` policies are held by the caller, which
/// decides them itself; `place` refuses them.
pub fn place<R: Rng + ?Sized>(
    placement: &Placement,
    key: Option<&str>,
    local: &str,
    members: &[Candidate],
    state: &mut PlacementState,
    rng: &mut R,
) -> Result<String, PlacementError> {
    let mut sorted: Vec<&Candidate> = members.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if sorted.is_empty() {
        return Err(PlacementError::NoMember);
    }
    let mut turn = |among: &[&Candidate]| {
        let i = (state.next % among.len() as u64) as usize;
        state.next = state.next.wrapping_add(1);
        among[i].name.clone()
    };
    match placement {
        Placement::Local => Ok(local.to_owned()),
        Placement::Node(name) => sorted
            .iter()
            .find(|c| &c.name == name)
            .map(|c| c.name.clone())
            .ok_or_else(|| PlacementError::UnknownNode(name.clone())),
        Placement::Role(role) => {
            let with: Vec<&Candidate> = sorted.iter().copied().filter(|c| c.roles.contains(role)).collect();
            if with.is_empty() {
                return Err(PlacementError::NoRole(role.clone()));
            }
            Ok(turn(&with))
        }
        Placement::RoundRobin => Ok(turn(&sorted)),
        Placement::Random => Ok(sorted[rng.random_range(0..sorted.len())].name.clone()),
        Placement::LeastLoaded => {
            let a = sorted[rng.random_range(0..sorted.len())];
            let b = sorted[rng.random_range(0..sorted.len())];
            // Ties go to the first draw, itself random, so no member is favoured by name.
            let pick = if b.load_score() < a.load_score() { b } else { a };
            Ok(pick.name.clone())
        }
        Placement::Custom(name) => Err(PlacementError::UnknownPolicy(name.clone())),
        Placement::ConsistentHash => {
            let key = key.ok_or(PlacementError::NeedsKey)?;
            ring::owner(key, sorted.iter().map(|c| c.name.as_str())).map(str::to_owned).ok_or(PlacementError::NoMember)
        }
    }
}

/// The placement service's frames: in the centralized architecture a worker asks a master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementFrame {
    /// Where should an actor placed by `placement` go?
    Request {
        /// Names the request in the answer.
        id: u64,
        /// The placement.
        placement: Placement,
        /// The spawn's key, if it has one.
        key: Option<String>,
    },
    /// The master's answer.
    Decision {
        /// The request answered.
        id: u64,
        /// The chosen member, or why none.
        result: Result<String, PlacementError>,
    },
}

impl PlacementFrame {
    /// Encodes the frame (the body of a service frame).
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec fails only if serde reports an error, which these types never do.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a service frame body, rejecting trailing bytes.
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        postcard_exact(body).map_err(|e| match e {
            Inexact::Malformed(e) => format!("malformed placement frame: {e}"),
            Inexact::Trailing(n) => format!("{n} trailing bytes after a placement frame"),
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::SmallRng, SeedableRng};

    use super::*;

    fn member(name: &str, roles: &[&str], actors: Option<u64>) -> Candidate {
        Candidate {
            name: name.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            load: actors.map(|n| ResourceReport { actor_count: n, ..ResourceReport::default() }),
        }
    }

    fn cluster() -> Vec<Candidate> {
        vec![member("n3", &["gpu"], Some(5)), member("n1", &["web"], Some(100)), member("n2", &["web", "gpu"], Some(7))]
    }

    /// A placement and the spawn's key.
    type Request<'a> = (Placement, Option<&'a str>);

    fn place_n(placement: &Request<'_>, members: &[Candidate], n: usize, seed: u64) -> Vec<String> {
        let mut state = PlacementState::default();
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..n).map(|_| place(&placement.0, placement.1, "n1", members, &mut state, &mut rng).expect("placed")).collect()
    }

    #[test]
    fn each_strategy_decides_as_its_table_says() {
        let c = cluster();
        let table: [(Request<'_>, Vec<&str>); 5] = [
            ((Placement::Local, None), vec!["n1", "n1", "n1"]),
            ((Placement::Node("n3".into()), None), vec!["n3", "n3", "n3"]),
            ((Placement::Role("gpu".into()), None), vec!["n2", "n3", "n2"]),
            ((Placement::RoundRobin, None), vec!["n1", "n2", "n3"]),
            ((Placement::ConsistentHash, Some("cart-42")), vec!["n1"; 3]),
        ];
        for (strategy, expected) in table {
            assert_eq!(place_n(&strategy, &c, 3, 1), expected, "{strategy:?}");
        }
        let owner = ring::owner("cart-42", ["n1", "n2", "n3"]).expect("owner");
        assert_eq!(owner, "n1", "the table's consistent-hash row follows the ring");
    }

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        for f in [
            PlacementFrame::Request { id: 1, placement: Placement::Custom("x".into()), key: Some("k".into()) },
            PlacementFrame::Decision { id: 1, result: Ok("n1".into()) },
            PlacementFrame::Decision { id: 2, result: Err(PlacementError::NoRole("gpu".into())) },
        ] {
            assert_eq!(PlacementFrame::decode(&f.encode()), Ok(f));
        }
        assert!(PlacementFrame::decode(&[9, 9, 9]).is_err());
    }

    #[test]
    fn impossible_requests_say_why() {
        let c = cluster();
        let mut s = PlacementState::default();
        let mut rng = SmallRng::seed_from_u64(0);
        assert_eq!(
            place(&Placement::Node("n9".into()), None, "n1", &c, &mut s, &mut rng),
            Err(PlacementError::UnknownNode("n9".into()))
        );
        assert_eq!(
            place(&Placement::Role("db".into()), None, "n1", &c, &mut s, &mut rng),
            Err(PlacementError::NoRole("db".into()))
        );
        assert_eq!(place(&Placement::Random, None, "n1", &[], &mut s, &mut rng), Err(PlacementError::NoMember));
        let custom = Placement::Custom("mine".into());
        assert_eq!(place(&custom, None, "n1", &c, &mut s, &mut rng), Err(PlacementError::UnknownPolicy("mine".into())));
    }

    #[test]
    fn random_reaches_every_member_and_the_same_seed_repeats_itself() {
        let c = cluster();
        let picks = place_n(&(Placement::Random, None), &c, 300, 7);
        for n in ["n1", "n2", "n3"] {
            let share = picks.iter().filter(|p| *p == n).count();
            assert!((70..=130).contains(&share), "{n}: {share} of 300");
        }
        assert_eq!(picks, place_n(&(Placement::Random, None), &c, 300, 7));
    }

    #[test]
    fn least_loaded_favours_idle_members_in_a_skewed_cluster() {
        // Three busy members and two idle ones (one has not reported yet).
        let skewed = vec![
            member("busy-1", &[], Some(900)),
            member("busy-2", &[], Some(800)),
            member("busy-3", &[], Some(1000)),
            member("idle-1", &[], Some(3)),
            member("idle-2", &[], None),
        ];
        let picks = place_n(&(Placement::LeastLoaded, None), &skewed, 1000, 3);
        let idle = picks.iter().filter(|p| p.starts_with("idle")).count();
        // Two draws both land on a busy member with probability 9/25.
        assert!(idle >= 580, "idle members got {idle} of 1000");
        let busiest = picks.iter().filter(|p| *p == "busy-3").count();
        assert!(busiest <= 60, "the busiest member got {busiest}: only when drawn twice");
    }
}
