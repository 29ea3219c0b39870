//! The distributed broker, pure: [`subscriptions`], the routing table that sends one copy
//! of a publish to each subscribing node.

pub mod subscriptions;
