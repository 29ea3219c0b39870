//! Links between nodes over any byte stream.
//!
//! A link is generic over `S: AsyncRead + AsyncWrite + Unpin`: TCP today, TLS or a simulated
//! network later. This layer owns framing, the handshake exchange, batched writes,
//! heartbeats and the frame-shaping hook; it does not know about actors. What a received
//! frame means is decided by the [`node`](crate::node) layer through a link handler.

pub mod codec;
pub(crate) mod link;
pub mod network;
pub(crate) mod protocol_error;
pub(crate) mod queue;
pub mod resolver;
pub mod shaper;
