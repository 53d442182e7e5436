//! Binding the node's TCP listeners (admin API, metrics, gateway).

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// Binds `addr` and returns the listener with the address it got (port 0 picks one).
/// `binding` names the listener and its setting, for the error an operator reads.
pub(crate) async fn bind_tcp(
    addr: SocketAddr,
    binding: &'static str,
) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Io {
        what: binding,
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| Error::Io {
        what: "reading a bound listener's address",
        source,
    })?;
    Ok((listener, bound))
}
