//! The length-delimited codec configuration shared by every link.

use tokio_util::codec::LengthDelimitedCodec;

use crate::proto::wire::frame::LENGTH_PREFIX;

/// Maximum frame size accepted before the handshake completes. Small, so an unauthenticated
/// peer cannot make the node reserve a large buffer.
pub const HANDSHAKE_MAX_FRAME: usize = 4 * 1024;

/// Builds the decoder for incoming frames: a 4-byte big-endian length, then the body.
pub fn frame_codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(LENGTH_PREFIX)
        .big_endian()
        .max_frame_length(max_frame)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::proto::wire::frame::{decode, encode, Frame};

    #[test]
    fn decodes_what_encode_writes_even_split_across_reads() {
        let bytes = encode(&Frame::Heartbeat).expect("encode");
        let mut codec = frame_codec(1024);
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let out = codec.decode(&mut buf).expect("no error");
            if i + 1 < bytes.len() {
                assert!(out.is_none(), "frame must not complete early");
            } else {
                assert_eq!(decode(&out.expect("complete")).expect("frame"), Frame::Heartbeat);
            }
        }
    }

    #[test]
    fn rejects_a_length_above_the_maximum_without_waiting_for_the_body() {
        let mut codec = frame_codec(HANDSHAKE_MAX_FRAME);
        let mut buf = BytesMut::from(&((HANDSHAKE_MAX_FRAME as u32 + 1).to_be_bytes())[..]);
        assert!(codec.decode(&mut buf).is_err());
    }

    #[test]
    fn reports_a_truncated_frame_at_end_of_stream() {
        let mut codec = frame_codec(1024);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 10, 1, 2][..]);
        assert!(codec.decode(&mut buf).expect("incomplete is fine").is_none());
        assert!(codec.decode_eof(&mut buf).is_err(), "EOF inside a frame is an error");
    }
}
