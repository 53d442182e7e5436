//! The transport stack: TCP (with DNS names) → optional pre-shared key → Noise → Yamux, and QUIC
//! beside it only when no swarm key is set. QUIC has no pre-shared-key layer, so with a key it
//! would be a way around it: with a key, QUIC is neither listened on nor dialled.

use std::io;

use futures::future::Either;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, upgrade::Version};
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::{Transport, dns, noise, quic, tcp, yamux};
use libp2p_identity::{Keypair, PeerId};

pub type CairnTransport = Boxed<(PeerId, StreamMuxerBox)>;

/// A connection that has not finished its handshakes (swarm key, Noise, Yamux) by then is
/// dropped: a peer with the wrong swarm key, or one that stalls on purpose, holds a slot no longer.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds the transport. `psk` closes the network to nodes without the same key.
pub fn build(key: &Keypair, psk: Option<PreSharedKey>) -> io::Result<CairnTransport> {
    let closed = psk.is_some();
    let noise = noise::Config::new(key).map_err(io::Error::other)?;
    let tcp = dns::tokio::Transport::system(tcp::tokio::Transport::new(
        tcp::Config::default().nodelay(true),
    ))?;
    let tcp = match psk {
        Some(psk) => tcp
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(HANDSHAKE_TIMEOUT)
            .boxed(),
        None => tcp
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(HANDSHAKE_TIMEOUT)
            .boxed(),
    };
    if closed {
        return Ok(tcp);
    }
    let quic = quic::tokio::Transport::new(quic::Config::new(key))
        .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)));
    // QUIC first: it declines TCP addresses cleanly, while the DNS wrapper around TCP reports a
    // QUIC address as a failed dial rather than as "not mine", which would stop the fallback.
    Ok(quic
        .or_transport(tcp)
        .map(|either, _| match either {
            Either::Left(output) => output,
            Either::Right(output) => output,
        })
        .boxed())
}
