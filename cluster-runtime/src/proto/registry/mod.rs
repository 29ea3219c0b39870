//! The cluster registry's pure logic: who owns a key (the ring), which registration wins
//! when two disagree (the conflict rules), what the directory stores and says (records and
//! frames), and the directory state machine every node runs.

pub mod conflict;
pub mod directory;
pub mod record;
pub mod ring;
