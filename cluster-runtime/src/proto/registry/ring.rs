//! Who owns a key: rendezvous (highest random weight) hashing over the members.
//!
//! Every member gets a score for the key from a fixed, portable hash (FNV-1a over the UTF-8
//! bytes, finished with SplitMix64's mixer so that nearby inputs spread); the member with the
//! highest score owns the key. Every node computes the same owner from the same members,
//! whatever its platform or compiler, and when a member joins only the keys it now wins move
//! to it (about 1/(n+1) of them); when one leaves, only its keys move. The function is pinned
//! by the golden vectors below: changing it moves every key in a running cluster.

/// FNV-1a, 64-bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finalizer: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The score of `member` for `key`.
pub fn score(key: &str, member: &str) -> u64 {
    mix(fnv1a(key.as_bytes()) ^ mix(fnv1a(member.as_bytes())))
}

/// The member that owns `key`: the highest score; ties (never seen in practice) go to the
/// smaller name. `None` without members.
pub fn owner<'a, I>(key: &str, members: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    members.into_iter().max_by(|a, b| score(key, a).cmp(&score(key, b)).then_with(|| b.cmp(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_vectors_pin_the_function() {
        // If one of these changes, every key in a running cluster may change owner.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(score("cart-42", "node-1"), GOLDEN[0]);
        assert_eq!(score("cart-42", "node-2"), GOLDEN[1]);
        assert_eq!(score("", ""), GOLDEN[2]);
        let members = ["node-1", "node-2", "node-3", "node-4", "node-5"];
        let owners: Vec<&str> =
            ["cart-1", "cart-2", "cart-3", "user/ada", "ünïcode"].iter().filter_map(|k| owner(k, members)).collect();
        assert_eq!(owners, GOLDEN_OWNERS);
    }

    // Computed by an independent implementation of the same function.
    const GOLDEN: [u64; 3] = [0x3098_f9f1_27d6_d661, 0x8037_bdf9_e396_3cc7, 0xcfa3_c5eb_015b_4663];
    const GOLDEN_OWNERS: [&str; 5] = ["node-4", "node-3", "node-2", "node-2", "node-3"];

    #[test]
    fn keys_spread_evenly_over_the_members() {
        let members: Vec<String> = (1..=5).map(|i| format!("node-{i}")).collect();
        let mut counts = [0usize; 5];
        for k in 0..50_000 {
            let key = format!("actor-{k}");
            let o = owner(&key, members.iter().map(String::as_str)).expect("members");
            counts[members.iter().position(|m| m == o).expect("a member")] += 1;
        }
        for c in counts {
            assert!((9_000..=11_000).contains(&c), "uneven: {counts:?}");
        }
    }

    #[test]
    fn a_joining_member_takes_about_its_share_and_only_from_others() {
        let five: Vec<String> = (1..=5).map(|i| format!("node-{i}")).collect();
        let mut six = five.clone();
        six.push("node-6".into());
        let keys: Vec<String> = (0..30_000).map(|k| format!("name-{k}")).collect();
        let mut moved = 0;
        for key in &keys {
            let before = owner(key, five.iter().map(String::as_str));
            let after = owner(key, six.iter().map(String::as_str));
            if before != after {
                assert_eq!(after, Some("node-6"), "a key only moves to the newcomer");
                moved += 1;
            }
        }
        let share = moved as f64 / keys.len() as f64;
        assert!((1.0 / 6.0 - 0.05..=1.0 / 6.0 + 0.05).contains(&share), "moved {share:.3}");
    }

    #[test]
    fn a_leaving_member_hands_over_only_its_own_keys() {
        let members: Vec<String> = (1..=5).map(|i| format!("node-{i}")).collect();
        let rest: Vec<&str> = members.iter().map(String::as_str).filter(|m| *m != "node-3").collect();
        for k in 0..10_000 {
            let key = format!("k{k}");
            let before = owner(&key, members.iter().map(String::as_str)).expect("owner");
            let after = owner(&key, rest.iter().copied()).expect("owner");
            if before != "node-3" {
                assert_eq!(before, after, "{key} moved although its owner stayed");
            }
        }
        assert_eq!(owner("x", std::iter::empty()), None);
    }
}
