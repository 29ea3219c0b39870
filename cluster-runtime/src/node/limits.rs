//! Enforcing the limits section: connections still in their handshake (in all and per IP
//! address), asks being handled per peer, and the counters of every refusal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::LimitsConfig;
use crate::ids::{IdMap, NodeId};

/// How often each limit refused something, since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Connections closed because too many were in their handshake (in all or from one address).
    pub handshakes: u64,
    /// Asks answered `Overloaded` because the peer had too many in flight.
    pub asks: u64,
    /// Spawns answered `Overloaded` because the peer had too many actors here.
    pub spawns: u64,
    /// Times a link stopped reading because its peer sent faster than allowed.
    pub throttled: u64,
}

#[derive(Default)]
struct Counters {
    handshakes: AtomicU64,
    asks: AtomicU64,
    spawns: AtomicU64,
    throttled: AtomicU64,
}

#[derive(Default)]
struct Pending {
    total: usize,
    by_addr: HashMap<IpAddr, usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection counted as "in its handshake" until this is dropped.
pub(crate) struct HandshakePermit {
    pending: Arc<Mutex<Pending>>,
    addr: IpAddr,
}

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        let mut p = lock(&self.pending);
        p.total = p.total.saturating_sub(1);
        if let Some(n) = p.by_addr.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.by_addr.remove(&self.addr);
            }
        }
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeRefusal {
    /// Too many connections in their handshake in all.
    Total(usize),
    /// Too many from this address.
    PerAddr(usize),
}

/// The node's limits and their state.
pub(crate) struct Limits {
    config: LimitsConfig,
    pending: Arc<Mutex<Pending>>,
    /// Asks being handled per peer: (count, bytes).
    asks: Mutex<IdMap<NodeId, (usize, usize)>>,
    counters: Counters,
}

impl Limits {
    pub(crate) fn new(config: LimitsConfig) -> Self {
        Self { config, pending: Arc::default(), asks: Mutex::default(), counters: Counters::default() }
    }

    /// The configured limits.
    pub(crate) fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Admits a new connection from `addr` into its handshake, or says which limit it hits.
    pub(crate) fn admit(&self, addr: IpAddr) -> Result<HandshakePermit, HandshakeRefusal> {
        let mut p = lock(&self.pending);
        let from_addr = p.by_addr.get(&addr).copied().unwrap_or(0);
        let refusal = if p.total >= self.config.pending_handshakes {
            Some(HandshakeRefusal::Total(self.config.pending_handshakes))
        } else if from_addr >= self.config.pending_handshakes_per_addr {
            Some(HandshakeRefusal::PerAddr(self.config.pending_handshakes_per_addr))
        } else {
            None
        };
        if let Some(r) = refusal {
            self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        p.total += 1;
        *p.by_addr.entry(addr).or_default() += 1;
        Ok(HandshakePermit { pending: self.pending.clone(), addr })
    }

    /// Counts an ask of `size` bytes from `peer` as being handled; false (and counted as
    /// refused) if the peer already has the most allowed, in asks or in bytes. One ask is
    /// always admitted when none is being handled.
    pub(crate) fn ask_begin(&self, peer: NodeId, size: usize) -> bool {
        let mut asks = lock(&self.asks);
        let (n, bytes) = asks.entry(peer).or_default();
        let over_bytes = *n > 0 && *bytes + size > self.config.inbound_ask_bytes_per_peer;
        if *n >= self.config.inbound_asks_per_peer || over_bytes {
            drop(asks);
            self.counters.asks.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        *n += 1;
        *bytes += size;
        true
    }

    /// An ask of `size` bytes from `peer` was answered.
    pub(crate) fn ask_end(&self, peer: NodeId, size: usize) {
        let mut asks = lock(&self.asks);
        if let Some((n, bytes)) = asks.get_mut(&peer) {
            *n = n.saturating_sub(1);
            *bytes = bytes.saturating_sub(size);
            if *n == 0 {
                asks.remove(&peer);
            }
        }
    }

    /// Counts a refused spawn.
    pub(crate) fn spawn_refused(&self) {
        self.counters.spawns.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a throttled read.
    pub(crate) fn throttled(&self) {
        self.counters.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// The refusal counters.
    pub(crate) fn refusals(&self) -> Refusals {
        let c = &self.counters;
        Refusals {
            handshakes: c.handshakes.load(Ordering::Relaxed),
            asks: c.asks.load(Ordering::Relaxed),
            spawns: c.spawns.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_are_capped_in_all_and_per_address_and_permits_give_back_their_place() {
        let limits =
            Limits::new(LimitsConfig { pending_handshakes: 3, pending_handshakes_per_addr: 2, ..Default::default() });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        let p1 = limits.admit(a).expect("first");
        let _p2 = limits.admit(a).expect("second");
        assert_eq!(limits.admit(a).err(), Some(HandshakeRefusal::PerAddr(2)));
        let _p3 = limits.admit(b).expect("another address");
        assert_eq!(limits.admit(b).err(), Some(HandshakeRefusal::Total(3)));
        drop(p1);
        assert!(limits.admit(a).is_ok(), "a finished handshake frees its place");
        assert_eq!(limits.refusals().handshakes, 2);
    }

    #[test]
    fn asks_in_flight_are_capped_per_peer() {
        let limits = Limits::new(LimitsConfig {
            inbound_asks_per_peer: 2,
            inbound_ask_bytes_per_peer: 100,
            ..Default::default()
        });
        let (x, y) = (NodeId(1), NodeId(2));
        assert!(limits.ask_begin(x, 10) && limits.ask_begin(x, 10));
        assert!(!limits.ask_begin(x, 10), "a third ask from the same peer");
        assert!(limits.ask_begin(y, 10), "another peer is not affected");
        limits.ask_end(x, 10);
        assert!(limits.ask_begin(x, 10));
        assert_eq!(limits.refusals().asks, 1);
        // Bytes: one ask larger than the budget passes alone, not beside another.
        assert!(limits.ask_begin(NodeId(3), 500));
        assert!(!limits.ask_begin(NodeId(3), 1));
        limits.ask_end(NodeId(3), 500);
        assert!(limits.ask_begin(NodeId(3), 60) && !limits.ask_begin(NodeId(3), 60));
    }
}
