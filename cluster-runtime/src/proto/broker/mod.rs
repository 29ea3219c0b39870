//! The distributed broker, pure: [`subscriptions`], the routing table that sends one copy
//! of a publish to each subscribing node, and [`wire`], the broker's frames.

pub mod subscriptions;
pub mod wire;
