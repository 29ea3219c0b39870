//! Links between nodes over any byte stream.
//!
//! A link is generic over `S: AsyncRead + AsyncWrite + Unpin`: TCP today, TLS or a simulated
//! network later. This layer owns framing, the handshake exchange, batched writes and
//! heartbeats; it does not know about actors. What a received frame means is decided by
//! the [`node`](crate::node) layer through the [`LinkHandler`](link::LinkHandler) trait.

pub mod codec;
#[cfg(feature = "testkit")]
mod faulty_writer;
pub mod link;
pub mod network;
