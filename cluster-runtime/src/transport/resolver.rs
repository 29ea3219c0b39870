//! DNS discovery: a name that resolves to many addresses (as a Kubernetes headless service
//! resolves to every pod) is looked up periodically, and every address found is contacted.
//! The [`Resolver`] is injectable so tests can fake DNS.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::transport::network::LocalFuture;

/// Resolves a name to socket addresses.
pub trait Resolver: Send + Sync + 'static {
    /// Every address `name` resolves to, with `port`.
    fn resolve(&self, name: &str, port: u16) -> LocalFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, name: &str, port: u16) -> LocalFuture<'static, io::Result<Vec<SocketAddr>>> {
        let target = format!("{name}:{port}");
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}

/// A resolver whose answers the test sets: every name resolves to the current list.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
}

impl StaticResolver {
    /// A resolver answering `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> Self {
        Self { addrs: Arc::new(Mutex::new(addrs)) }
    }

    /// Changes the answer (as pods come and go).
    pub fn set(&self, addrs: Vec<SocketAddr>) {
        *self.addrs.lock().unwrap_or_else(|p| p.into_inner()) = addrs;
    }
}

impl Resolver for StaticResolver {
    fn resolve(&self, _name: &str, port: u16) -> LocalFuture<'static, io::Result<Vec<SocketAddr>>> {
        let addrs: Vec<SocketAddr> = self
            .addrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|a| SocketAddr::new(a.ip(), if a.port() == 0 { port } else { a.port() }))
            .collect();
        Box::pin(async move { Ok(addrs) })
    }
}

/// Shared handle to a [`Resolver`], as held by the configuration.
#[derive(Clone)]
pub struct ResolverHandle(pub Arc<dyn Resolver>);

impl fmt::Debug for ResolverHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl Default for ResolverHandle {
    fn default() -> Self {
        Self(Arc::new(SystemResolver))
    }
}
