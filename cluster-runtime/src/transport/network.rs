//! Where links come from: a [`Network`] binds listeners and opens connections. The node
//! only sees boxed byte streams, so TCP, a simulated network or (later) TLS plug in here.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A bidirectional byte stream a link can run over.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> ByteStream for T {}

/// A boxed [`ByteStream`].
pub type BoxStream = Box<dyn ByteStream>;

/// A future that runs on the node's thread.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Accepts incoming connections.
pub trait NetListener {
    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Waits for the next connection and returns it with the peer's address.
    fn accept(&mut self) -> LocalFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
}

/// Binds listeners and opens connections.
pub trait Network: Send + Sync + 'static {
    /// Binds a listener on `addr`.
    fn bind(&self, addr: SocketAddr) -> LocalFuture<'static, io::Result<Box<dyn NetListener>>>;
    /// Connects to `addr` (`host:port`).
    fn connect(&self, addr: String) -> LocalFuture<'static, io::Result<BoxStream>>;
}

/// The real network: tokio TCP with Nagle's algorithm off (the link batches writes itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpNetwork;

struct TcpNetListener(tokio::net::TcpListener);

impl NetListener for TcpNetListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> LocalFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, addr) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as BoxStream, addr))
        })
    }
}

impl Network for TcpNetwork {
    fn bind(&self, addr: SocketAddr) -> LocalFuture<'static, io::Result<Box<dyn NetListener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TcpNetListener(listener)) as Box<dyn NetListener>)
        })
    }

    fn connect(&self, addr: String) -> LocalFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

/// Shared handle to a [`Network`], as held by the configuration.
#[derive(Clone)]
pub struct NetworkHandle(pub std::sync::Arc<dyn Network>);

impl fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Network")
    }
}

impl Default for NetworkHandle {
    fn default() -> Self {
        Self(std::sync::Arc::new(TcpNetwork))
    }
}
