//! Checks shared by the configuration sections.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::ConfigError;

pub(crate) use crate::proto::wire::handshake::valid_name;

/// `ip:port` or `host:port` with a non-zero port.
pub(crate) fn valid_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

/// `v` must lie in `lo..=hi`.
pub(crate) fn range(
    setting: &'static str,
    v: usize,
    lo: usize,
    hi: usize,
    expected: &'static str,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::OutOfRange { setting, value: v.to_string(), expected });
    }
    Ok(())
}

/// `d` must be greater than zero.
pub(crate) fn dur(setting: &'static str, d: Duration, expected: &'static str) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::OutOfRange { setting, value: format!("{d:?}"), expected });
    }
    Ok(())
}
