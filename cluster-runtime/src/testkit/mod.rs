//! The test toolkit (feature `testkit`): what a user needs to test a cluster under faults.
//!
//! - [`faults`]: network conditions imposed inside real links (latency, loss, duplication,
//!   reordering, bandwidth, partitions).
//! - [`harness`]: [`ClusterTestHarness`](harness::ClusterTestHarness), N nodes in one
//!   process with kill, restart, stop, conditions and waiting on assertions.
//! - [`history`]: a recorder of sends, receives and acknowledgements, and a checker that
//!   reports lost, duplicated, reordered and unexpected messages.
//! - [`process`]: nodes as OS processes: spawn, wait until ready, SIGKILL, SIGSTOP, SIGCONT.
//! - `sim` (feature `sim`): the same nodes over turmoil's simulated network and clock.

pub mod faults;
pub mod harness;
pub mod history;
pub mod process;
#[cfg(feature = "sim")]
pub mod sim;
