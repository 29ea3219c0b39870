//! The cluster registry's pure logic: who owns a name (the ring), and which registration
//! wins when two disagree (the conflict rules).

pub mod conflict;
pub mod ring;
