//! Serialization formats for message payloads and actor state.
//!
//! The format is chosen per actor type ([`DistributedActor::format`](crate::DistributedActor::format))
//! and travels in every frame, so the receiver never guesses.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::ClusterError;

/// A payload serialization format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Format {
    /// postcard: compact, fast, the default.
    #[default]
    Postcard,
    /// JSON (serde_json): readable and interoperable, larger and slower.
    Json,
}

impl Format {
    /// Encodes `value` in this format.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T, what: &str) -> Result<Vec<u8>, ClusterError> {
        let res = match self {
            Format::Postcard => postcard::to_stdvec(value).map_err(|e| e.to_string()),
            Format::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        };
        res.map_err(|detail| ClusterError::Encode { what: what.to_owned(), detail })
    }

    /// Encodes `value` into a buffer of exactly its size: one allocation, where
    /// [`encode`](Self::encode) grows its buffer as it goes (and `Bytes` made from a
    /// buffer with room to spare allocates once more).
    pub fn encode_bytes<T: Serialize + ?Sized>(self, value: &T, what: &str) -> Result<bytes::Bytes, ClusterError> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        /// A scratch buffer grown past this is given back rather than kept.
        const KEEP: usize = 64 * 1024;
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                let res = self.encode_into(value, &mut buf, what).map(|()| bytes::Bytes::copy_from_slice(&buf));
                if buf.capacity() > KEEP {
                    *buf = Vec::new();
                }
                res
            }
            // Encoding a value whose serialization encodes another (not done here, but
            // possible): a buffer of its own.
            Err(_) => self.encode(value, what).map(bytes::Bytes::from),
        })
    }

    /// Appends the encoding of `value` to `buf`.
    pub fn encode_into<T: Serialize + ?Sized>(
        self,
        value: &T,
        buf: &mut Vec<u8>,
        what: &str,
    ) -> Result<(), ClusterError> {
        let res = match self {
            Format::Postcard => match postcard::to_extend(value, std::mem::take(buf)) {
                Ok(out) => {
                    *buf = out;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            Format::Json => serde_json::to_writer(&mut *buf, value).map_err(|e| e.to_string()),
        };
        res.map_err(|detail| ClusterError::Encode { what: what.to_owned(), detail })
    }

    /// The index postcard gives this variant on the wire: serde numbers variants by their
    /// position, which is also the discriminant of a fieldless enum without explicit
    /// discriminants, so the cast is derived from the declaration, not written by hand.
    pub(crate) const fn wire_index(self) -> u64 {
        self as u64
    }

    /// Decodes a `T` from `bytes`, rejecting trailing bytes.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8], what: &str) -> Result<T, ClusterError> {
        let res = match self {
            Format::Postcard => postcard_exact::<T>(bytes).map_err(|e| match e {
                Inexact::Malformed(e) => e,
                Inexact::Trailing(n) => format!("{n} trailing bytes after the value"),
            }),
            // serde_json::from_slice already rejects trailing non-whitespace.
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        };
        res.map_err(|detail| ClusterError::Decode { what: what.to_owned(), detail })
    }
}

/// Why bytes are not exactly one postcard value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inexact {
    /// Not a valid value.
    Malformed(String),
    /// A valid value followed by this many bytes.
    Trailing(usize),
}

/// Decodes exactly one postcard value from `bytes`: postcard itself accepts trailing bytes,
/// which on the wire would hide a framing error.
pub(crate) fn postcard_exact<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Inexact> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Inexact::Trailing(rest.len())),
        Err(e) => Err(Inexact::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_both_formats() {
        for f in [Format::Postcard, Format::Json] {
            let bytes = f.encode(&(7u64, "seven".to_string()), "pair").expect("encode");
            let back: (u64, String) = f.decode(&bytes, "pair").expect("decode");
            assert_eq!(back, (7, "seven".to_string()));
        }
    }

    #[test]
    fn postcard_rejects_trailing_bytes() {
        let mut bytes = Format::Postcard.encode(&5u64, "n").expect("encode");
        bytes.push(0);
        let err = Format::Postcard.decode::<u64>(&bytes, "n").expect_err("trailing byte");
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn json_rejects_trailing_garbage() {
        assert!(Format::Json.decode::<u64>(b"5 x", "n").is_err());
    }
}
