//! Helpers shared by test binaries of this package.

use std::time::{Duration, Instant};

use actix_cluster::ClusterError;

/// Retries `f` every 20 ms until it succeeds; fails naming `what` once `deadline` passed.
pub(crate) async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let started = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(started.elapsed() < deadline, "{what}: {e}");
                actix_cluster::rt::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
