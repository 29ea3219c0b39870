//! Membership, pure: the table of members, the failure detectors (SWIM through foca, the
//! phi accrual detector of centralized masters), the two architectures' roles and the
//! service's frames. [`core::MembershipCore`] combines them for one node.

pub mod centralized;
pub mod core;
pub mod frames;
pub mod phi_accrual;
pub mod swim;
pub mod table;

pub use table::{Member, MemberId, MemberStatus, MembershipEvent, MembershipTable, Profile, ResourceReport};
