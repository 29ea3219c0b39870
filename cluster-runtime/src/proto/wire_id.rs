//! Stable 64-bit wire ids computed at compile time from stable names.
//!
//! The id is FNV-1a (64-bit) over the UTF-8 bytes of the name. It depends only on the name,
//! never on the compiler, the platform or the type's layout, so two builds agree on it.

/// Computes the wire id of a stable name. `const`, so ids are computed at compile time.
pub const fn wire_id(name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = name.as_bytes();
    let mut hash = OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::wire_id;

    #[test]
    fn matches_reference_fnv1a_vectors() {
        assert_eq!(wire_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(wire_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(wire_id("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn is_usable_in_const_context() {
        const ID: u64 = wire_id("shop::Add");
        assert_eq!(ID, wire_id("shop::Add"));
        assert_ne!(ID, wire_id("shop::Sub"));
    }
}
