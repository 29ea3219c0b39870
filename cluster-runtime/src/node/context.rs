//! The node decoding on this thread, so that a handle inside a message, a reply or a spawn
//! state (an `ActorRef` is serializable) comes out bound to the node that received it.
//!
//! Several nodes can share a thread (tests, the harness), so the node is set for the span of
//! one decode and the previous one restored after. Setting it is on every message's path,
//! so it is one thread-local integer: the node's slot in a process-wide table, which only
//! the rare decode of a handle reads.

use std::any::Any;
use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// A node, as the table holds it (the node module depends on this one, not the reverse).
type AnyNode = Weak<dyn Any + Send + Sync>;

/// Every node of the process, by slot; `None` is a free slot.
static NODES: Mutex<Vec<Option<AnyNode>>> = Mutex::new(Vec::new());

/// No node is decoding.
const NONE: usize = usize::MAX;

thread_local! {
    static DECODING: Cell<usize> = const { Cell::new(NONE) };
}

fn nodes() -> MutexGuard<'static, Vec<Option<AnyNode>>> {
    NODES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A node's place in the process-wide table, held by the node and freed when it drops.
#[derive(Debug)]
pub(crate) struct Slot(usize);

impl Slot {
    /// Takes a free slot for `node`.
    pub(crate) fn new(node: AnyNode) -> Self {
        let mut nodes = nodes();
        match nodes.iter().position(Option::is_none) {
            Some(free) => {
                nodes[free] = Some(node);
                Self(free)
            }
            None => {
                nodes.push(Some(node));
                Self(nodes.len() - 1)
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(entry) = nodes().get_mut(self.0) {
            *entry = None;
        }
    }
}

/// Runs `f` with the node in `slot` as the node decoding on this thread.
pub(crate) fn decoding<R>(slot: &Slot, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            DECODING.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DECODING.with(|d| d.replace(slot.0)));
    f()
}

/// The node decoding on this thread, if any (and if it is a `N`).
pub(crate) fn decoder<N: Any + Send + Sync>() -> Option<Arc<N>> {
    let slot = DECODING.with(Cell::get);
    if slot == NONE {
        return None;
    }
    let node = nodes().get(slot)?.as_ref()?.upgrade()?;
    node.downcast::<N>().ok()
}
