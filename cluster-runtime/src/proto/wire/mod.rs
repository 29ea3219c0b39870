//! The wire: core frames and their codec, service channels, the data plane's fast encoder,
//! and the handshake rules.

pub mod channel;
pub mod fast_path;
pub mod frame;
pub mod handshake;
