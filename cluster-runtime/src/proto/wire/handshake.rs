//! Handshake rules: when a peer's [`Hello`] is acceptable, and which link survives when two
//! nodes connect to each other at the same time.

use crate::ids::NodeId;
use crate::proto::wire::frame::{Hello, RejectReason, PROTOCOL_VERSION};

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// This node connected to the peer.
    Local,
    /// The peer connected to this node.
    Remote,
}

/// A node or cluster name: 1-64 letters, digits, `-`, `_` or `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A listen address as a peer may announce it: 1-255 printable characters, no spaces.
pub fn valid_addr(addr: &str) -> bool {
    !addr.is_empty() && addr.len() <= 255 && addr.chars().all(|c| c.is_ascii_graphic())
}

/// Checks a peer's hello against this node's identity.
pub fn check_hello(local_cluster: &str, local_node_id: NodeId, hello: &Hello) -> Result<(), RejectReason> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(RejectReason::Version { ours: PROTOCOL_VERSION });
    }
    if hello.cluster != local_cluster {
        return Err(RejectReason::ClusterMismatch);
    }
    if hello.node_id == local_node_id {
        return Err(RejectReason::SelfConnection);
    }
    if !valid_name(&hello.node_name) {
        return Err(RejectReason::InvalidNodeName);
    }
    if !valid_addr(&hello.listen_addr) {
        return Err(RejectReason::InvalidAddress);
    }
    // No authentication is configured yet, so any credentials are unexpected.
    if hello.auth.is_some() {
        return Err(RejectReason::Authentication);
    }
    Ok(())
}

/// Decides whether a newly established link to a peer replaces the existing one.
///
/// Both nodes evaluate this with the same inputs (mirrored), so they keep the same
/// connection: the one opened by the node with the smaller id. Between two links opened
/// by the same side, the newer wins: the older is a leftover of a connection the opener
/// already gave up on.
pub fn new_link_wins(local_id: NodeId, peer_id: NodeId, existing: Initiator, new: Initiator) -> bool {
    if existing == new {
        return true;
    }
    let preferred = if local_id < peer_id { Initiator::Local } else { Initiator::Remote };
    new == preferred
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(cluster: &str, id: u128) -> Hello {
        Hello::new(cluster, NodeId(id), "n", "127.0.0.1:1")
    }

    #[test]
    fn accepts_a_matching_peer_and_rejects_each_mismatch() {
        assert_eq!(check_hello("c", NodeId(1), &hello("c", 2)), Ok(()));
        assert_eq!(check_hello("c", NodeId(1), &hello("d", 2)), Err(RejectReason::ClusterMismatch));
        assert_eq!(check_hello("c", NodeId(1), &hello("c", 1)), Err(RejectReason::SelfConnection));
        let mut old = hello("c", 2);
        old.protocol_version = PROTOCOL_VERSION + 1;
        assert_eq!(check_hello("c", NodeId(1), &old), Err(RejectReason::Version { ours: PROTOCOL_VERSION }));
        let mut authed = hello("c", 2);
        authed.auth = Some(vec![1]);
        assert_eq!(check_hello("c", NodeId(1), &authed), Err(RejectReason::Authentication));
    }

    #[test]
    fn names_and_addresses_in_a_hello_follow_the_local_rules() {
        for bad in ["", "a b", "../../etc", &"n".repeat(2000), "tab\there", "ünï"] {
            let mut h = hello("c", 2);
            h.node_name = bad.to_owned();
            assert_eq!(check_hello("c", NodeId(1), &h), Err(RejectReason::InvalidNodeName), "{bad:?}");
        }
        for bad in ["", "a b:1", &"a".repeat(300)] {
            let mut h = hello("c", 2);
            h.listen_addr = bad.to_owned();
            assert_eq!(check_hello("c", NodeId(1), &h), Err(RejectReason::InvalidAddress), "{bad:?}");
        }
    }

    #[test]
    fn both_sides_keep_the_same_link_in_every_arrival_order() {
        use Initiator::*;
        let (a, b) = (NodeId(10), NodeId(20));
        // Each pair (existing, new) as seen on A; B sees the mirror image.
        for (existing_on_a, new_on_a) in [(Local, Remote), (Remote, Local)] {
            let mirror = |i| if i == Local { Remote } else { Local };
            let a_keeps_new = new_link_wins(a, b, existing_on_a, new_on_a);
            let kept_on_a = if a_keeps_new { new_on_a } else { existing_on_a };
            // On B the connection A opened is "Remote"; it may have arrived in either order.
            for b_order_flipped in [false, true] {
                let (ex_b, new_b) = if b_order_flipped {
                    (mirror(new_on_a), mirror(existing_on_a))
                } else {
                    (mirror(existing_on_a), mirror(new_on_a))
                };
                let kept_on_b = if new_link_wins(b, a, ex_b, new_b) { new_b } else { ex_b };
                assert_eq!(mirror(kept_on_a), kept_on_b, "A and B must keep the same connection");
                assert_eq!(kept_on_a, Local, "the smaller id's outgoing connection is kept");
            }
        }
    }

    #[test]
    fn a_newer_link_from_the_same_side_replaces_the_older() {
        assert!(new_link_wins(NodeId(1), NodeId(2), Initiator::Local, Initiator::Local));
        assert!(new_link_wins(NodeId(1), NodeId(2), Initiator::Remote, Initiator::Remote));
    }
}
