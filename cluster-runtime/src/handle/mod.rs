//! Typed handles: [`RemoteAddr`] for an actor on another node, [`ActorRef`] for an actor
//! anywhere, and the ways to start actors the cluster can address.

pub mod actor_ref;
mod deferred;
pub mod ext;
pub mod keyed;
pub mod remote_addr;
mod resolve;
pub mod spawn;
mod virtual_actor;

pub use actor_ref::ActorRef;
pub use ext::DistributedActorExt;
pub use remote_addr::RemoteAddr;
pub use spawn::Spawn;
