//! The node decoding on this thread, so that a handle inside a message, a reply or a spawn
//! state (an `ActorRef` is serializable) comes out bound to the node that received it.
//!
//! Several nodes can share a thread (tests, the harness), so the node is set for the span of
//! one decode and the previous one restored after.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use crate::node::kernel::Node;

thread_local! {
    static DECODING: RefCell<Weak<Node>> = const { RefCell::new(Weak::new()) };
}

/// Runs `f` with `node` as the node decoding on this thread.
pub(crate) fn decoding<R>(node: &Weak<Node>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Weak<Node>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                DECODING.with(|d| *d.borrow_mut() = previous);
            }
        }
    }
    let previous = DECODING.with(|d| std::mem::replace(&mut *d.borrow_mut(), node.clone()));
    let _restore = Restore(Some(previous));
    f()
}

/// The node decoding on this thread, if any.
pub(crate) fn decoder() -> Option<Arc<Node>> {
    DECODING.with(|d| d.borrow().upgrade())
}
