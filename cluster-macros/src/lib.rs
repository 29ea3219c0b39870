//! Procedural macros of actix-cluster. Use them through the `actix-cluster` crate, which
//! re-exports them; generated code only names `::actix_cluster::…` paths.
//!
//! Each macro parses its arguments (`attr`), builds a view of the item (`ast`), checks it
//! (`validate`) and generates code (`expand`). On any error the user's item is still
//! emitted with minimal stand-in impls (`fallback`), so one mistake gives one error instead
//! of a cascade.

use proc_macro::TokenStream;

mod ast;
mod attr;
mod ctxt;
mod expand;
mod fallback;
mod symbol;
mod validate;

/// Makes a type a message that can cross the network.
///
/// ```ignore
/// #[cluster_message(result = "u64")]            // required: the reply type
/// #[derive(Serialize, Deserialize)]
/// struct Add(u64);
///
/// #[cluster_message(result = "()", name = "shop.v1.Restock")] // pins the wire id
/// #[derive(Serialize, Deserialize)]
/// struct Restock { sku: String }
/// ```
///
/// Implements actix `Message` and `ClusterMessage` (a stable 64-bit wire id computed at
/// compile time from `name`, by default the type's module path and name), and registers
/// the type so duplicate ids are reported when a node starts.
#[proc_macro_attribute]
pub fn cluster_message(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::message::expand(args.into(), input.into()).into()
}

/// Makes an actor spawnable on other nodes and reachable from the network.
///
/// ```ignore
/// #[distributed_actor(messages(Add, Get))]       // messages accepted from the network
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter { total: u64 }
/// ```
///
/// Arguments: `messages(...)` the message types the actor accepts remotely (each needs a
/// `Handler` impl); `name = "..."` pins the type id; `format = "postcard" | "json"` the wire
/// format of its messages and state; `manual_actor` if you write `impl Actor` yourself
/// (otherwise one with `Context<Self>` is generated); `placement = "..."` where
/// `start_distributed()` and `spawn` put it; `keyed` / `keyed = "field"` a keyed (virtual)
/// actor reached with `actor_for`; `recovery = "restart" | "none"` whether it is re-created
/// on a surviving node when its node is lost (from `Default` unless it keeps replicas),
/// `replicas = N` how many other nodes keep its latest snapshot, and
/// `snapshot_every = "500ms"` to snapshot at most once per interval instead of after each
/// message.
#[proc_macro_attribute]
pub fn distributed_actor(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::actor::expand(args.into(), input.into()).into()
}
