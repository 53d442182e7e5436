//! Other nodes: `peers ls`, `peers connect`, `peers ban`.

use std::collections::BTreeMap;

use cairn_proto::admin;

use super::args::PeersAction;
use super::output::{self, emit};

pub(crate) async fn run(json: bool, action: PeersAction) -> anyhow::Result<()> {
    match action {
        PeersAction::Ls { all, api } => {
            let mut client = api.connect().await?;
            let listed = client
                .peers_ls(admin::PeersLsRequest {})
                .await?
                .into_inner();
            let peers = merge(listed);
            output::emit_all(json, peers.iter().filter(|p| all || p.connected))?;
        }
        PeersAction::Connect { multiaddr, api } => {
            let mut client = api.connect().await?;
            let connected = client
                .peers_connect(admin::PeersConnectRequest {
                    addr: multiaddr.clone(),
                })
                .await?
                .into_inner();
            emit(
                json,
                &output::Connected {
                    peer_id: connected.peer_id,
                    addr: multiaddr,
                },
            )?;
        }
        PeersAction::Ban {
            peer_id,
            duration,
            api,
        } => {
            let mut client = api.connect().await?;
            let seconds = duration.map_or(0, |d| d.as_secs().max(1));
            client
                .peers_ban(admin::PeersBanRequest {
                    peer_id: peer_id.clone(),
                    seconds,
                })
                .await?;
            emit(
                json,
                &output::Banned {
                    peer_id,
                    banned: true,
                },
            )?;
        }
    }
    Ok(())
}

/// Connected peers and routing-table entries, one entry per peer, sorted by peer ID.
fn merge(listed: admin::PeersLsResponse) -> Vec<output::PeerEntry> {
    let mut peers: BTreeMap<String, output::PeerEntry> = BTreeMap::new();
    for peer in listed.peers {
        peers.insert(
            peer.peer_id.clone(),
            output::PeerEntry {
                peer_id: peer.peer_id,
                addrs: peer.addrs,
                connected: true,
                in_routing_table: false,
            },
        );
    }
    for peer_id in listed.routing_table {
        peers
            .entry(peer_id.clone())
            .or_insert_with(|| output::PeerEntry {
                peer_id,
                addrs: Vec::new(),
                connected: false,
                in_routing_table: false,
            })
            .in_routing_table = true;
    }
    peers.into_values().collect()
}
