//! The transport stack: TCP (with DNS names) → optional pre-shared key → Noise → Yamux, and QUIC
//! beside it only when no swarm key is set. QUIC has no pre-shared-key layer, so with a key it
//! would be a way around it: with a key, QUIC is neither listened on nor dialled.
//!
//! TCP dials go out from a fresh port, never from the listening one: port reuse serves NAT hole
//! punching, which a cluster does not do, and it breaks redials. A dial from the listening port to
//! a peer whose earlier connection with it still lingers in TIME_WAIT (60 s on Linux) fails with
//! "address in use", and libp2p-tcp retries from a new port only on "address not available":
//! such a node could not reach that peer again for a minute.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::Either;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{
    Boxed, DialOpts, ListenerId, PortUse, TransportError, TransportEvent, upgrade::Version,
};
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::{Multiaddr, Transport, dns, noise, quic, tcp, yamux};
use libp2p_identity::{Keypair, PeerId};

pub type CairnTransport = Boxed<(PeerId, StreamMuxerBox)>;

/// A connection that has not finished its handshakes (swarm key, Noise, Yamux) by then is
/// dropped: a peer with the wrong swarm key, or one that stalls on purpose, holds a slot no longer.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds the transport. `psk` closes the network to nodes without the same key.
pub fn build(key: &Keypair, psk: Option<PreSharedKey>) -> io::Result<CairnTransport> {
    let closed = psk.is_some();
    let noise = noise::Config::new(key).map_err(io::Error::other)?;
    let tcp = dns::tokio::Transport::system(FreshPortDials(tcp::tokio::Transport::new(
        tcp::Config::default().nodelay(true),
    )))?;
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

/// A transport whose dials never reuse the listening port (see the module's doc).
struct FreshPortDials<T>(T);

impl<T: Transport + Unpin> Transport for FreshPortDials<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let opts = DialOpts {
            port_use: PortUse::New,
            ..opts
        };
        self.0.dial(addr, opts)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::Endpoint;

    /// Records the options of the last dial, and refuses every address.
    #[derive(Default)]
    struct Recording(Option<PortUse>);

    impl Transport for Recording {
        type Output = ();
        type Error = io::Error;
        type ListenerUpgrade = futures::future::Ready<io::Result<()>>;
        type Dial = futures::future::Ready<io::Result<()>>;

        fn listen_on(
            &mut self,
            _: ListenerId,
            a: Multiaddr,
        ) -> Result<(), TransportError<io::Error>> {
            Err(TransportError::MultiaddrNotSupported(a))
        }

        fn remove_listener(&mut self, _: ListenerId) -> bool {
            false
        }

        fn dial(
            &mut self,
            a: Multiaddr,
            opts: DialOpts,
        ) -> Result<Self::Dial, TransportError<io::Error>> {
            self.0 = Some(opts.port_use);
            Err(TransportError::MultiaddrNotSupported(a))
        }

        fn poll(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
            Poll::Pending
        }
    }

    #[test]
    fn dials_that_ask_to_reuse_the_listening_port_go_out_from_a_new_one() {
        let mut transport = FreshPortDials(Recording::default());
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        for asked in [PortUse::Reuse, PortUse::New] {
            let opts = DialOpts {
                role: Endpoint::Dialer,
                port_use: asked,
            };
            assert!(transport.dial(addr.clone(), opts).is_err());
            assert_eq!(transport.0.0, Some(PortUse::New), "asked {asked:?}");
        }
    }
}
