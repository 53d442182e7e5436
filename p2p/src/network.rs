//! Builds the swarm and splits it into the task that runs it and the client that drives it.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, SwarmBuilder};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use crate::authority::{Authority, RecordGate};
use crate::behaviour::Behaviour;
use crate::client::{Client, NetworkEvent};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::identity::NodeIdentity;
use crate::metrics::P2pMetrics;
use crate::settings::NetworkSettings;
use crate::transport;

/// Commands waiting for the swarm task. Callers wait (back-pressure) when it is full.
const COMMAND_QUEUE: usize = 256;
/// An idle connection closes after this long: peers that exchange nothing do not hold sockets.
const IDLE_CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Builds the swarm, starts listening and returns the client, the stream of inbound requests
/// the node must answer, and the event loop to spawn. Registers metrics in `registry`.
pub fn new(
    identity: &NodeIdentity,
    settings: NetworkSettings,
    registry: &mut Registry,
) -> Result<(Client, mpsc::Receiver<NetworkEvent>, EventLoop), Error> {
    let psk = settings.swarm_key.map(|k| k.0);
    let transport =
        transport::build(identity.keypair(), psk).map_err(|e| Error::Transport(e.to_string()))?;
    let libp2p_registry = registry.sub_registry_with_prefix("libp2p");
    let mut swarm = SwarmBuilder::with_existing_identity(identity.keypair().clone())
        .with_tokio()
        .with_other_transport(move |_| transport)
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_bandwidth_metrics(libp2p_registry)
        .with_behaviour(|key| Behaviour::new(key, &settings))
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    let libp2p_metrics = libp2p::metrics::Metrics::new(libp2p_registry);
    let metrics = P2pMetrics::register(registry);
    metrics
        .open_network
        .set(i64::from(settings.allowlist.is_empty()));
    if settings.allowlist.is_empty() && settings.listen.iter().any(|a| !is_loopback(a)) {
        tracing::warn!(
            "open network: no p2p.allowlist, so any peer that can reach a listen address (and \
             holds the swarm key, if one is set) is admitted and may store pin records and ask \
             for replicas; `cairn init-cluster` writes a closed cluster"
        );
    }
    let gate = RecordGate::new(
        Authority {
            local: identity.peer_id(),
            allowlist: settings.allowlist.iter().copied().collect(),
            operators: settings.operators.iter().copied().collect(),
            max_factor: settings.max_factor,
        },
        registry,
    );

    if let Some(key) = &settings.swarm_key {
        tracing::info!(
            fingerprint = %key.fingerprint(),
            "swarm key set: only nodes with the same key can connect; QUIC is off (it has no \
             pre-shared-key layer)"
        );
    }
    for addr in &settings.listen {
        if settings.swarm_key.is_some() && is_quic(addr) {
            tracing::warn!(%addr, "not listening on a QUIC address: a swarm key is set");
            continue;
        }
        swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    }

    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(settings.inbound_queue.max(1));
    let (bootstrap_tx, bootstrap_rx) = watch::channel(Default::default());
    let (listening_tx, listening_rx) = watch::channel(Vec::new());
    let bitswap =
        swarm.behaviour().stream.as_ref().map(|streams| {
            crate::bitswap::BitswapStreams(streams.new_control(), Default::default())
        });
    let client = Client {
        local_peer_id: identity.peer_id(),
        commands: commands_tx,
        bootstrap: bootstrap_rx,
        listening: listening_rx,
        gate: gate.clone(),
        bitswap,
    };
    let event_loop = EventLoop::new(
        swarm,
        settings,
        gate,
        commands_rx,
        events_tx,
        metrics,
        libp2p_metrics,
        bootstrap_tx,
        listening_tx,
    );
    Ok((client, events_rx, event_loop))
}

fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}

/// Whether `addr` listens on a loopback address only (nobody off this machine can reach it).
fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}
