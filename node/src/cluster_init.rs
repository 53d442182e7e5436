//! `cairn init-cluster`: the data directories of a private cluster, made in one go so that every
//! node knows the others before any starts — one shared swarm key, and in each node's config the
//! other nodes as bootstrap peers pinned to their peer IDs and as the allowlist. Used by the
//! docker-compose cluster's one-shot init service; works the same for hosts on a real network.

use std::path::{Path, PathBuf};

use cairn_config::Config;
use cairn_p2p::SwarmKey;

use crate::error::{Error, Result};
use crate::init::{CONFIG_FILE, Initialized, init};
use crate::secrets::write_secret;

/// The swarm key's file name, in the output folder and in every node's folder.
pub const SWARM_KEY_FILE: &str = "swarm.key";

/// The shape of the cluster.
#[derive(Clone, Debug)]
pub struct ClusterLayout {
    /// Host names the nodes reach each other by (docker-compose service names); each node's
    /// folder is named after its host.
    pub hosts: Vec<String>,
    pub p2p_port: u16,
    /// Where each node's admin API listens inside its host (publish it on loopback only).
    pub admin_listen: String,
    pub replication_factor: u32,
    /// Hand every folder and file to this uid:gid (an init container running as root preparing
    /// volumes for an unprivileged daemon); `None` leaves them to the caller.
    pub owner: Option<(u32, u32)>,
}

/// Creates `out/<host>/` for every host, and `out/swarm.key`. Refuses to touch an existing
/// cluster (its `swarm.key`).
pub fn init_cluster(out: &Path, layout: &ClusterLayout) -> Result<Vec<Initialized>> {
    check_hosts(&layout.hosts)?;
    let key_file = out.join(SWARM_KEY_FILE);
    if key_file.exists() {
        return Err(Error::Exists(key_file));
    }
    let nodes = layout
        .hosts
        .iter()
        .map(|host| init(&out.join(host), false))
        .collect::<Result<Vec<_>>>()?;
    let key = SwarmKey::generate()?.to_file_text();
    for (index, node) in nodes.iter().enumerate() {
        let others: Vec<(&String, &Initialized)> = layout
            .hosts
            .iter()
            .zip(&nodes)
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, pair)| pair)
            .collect();
        write_secret(&node.data_dir.join(SWARM_KEY_FILE), key.as_bytes(), false)?;
        let path = node.data_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            what: "reading a node's config",
            source,
        })?;
        let mut config = Config::from_toml(&text, &path)?;
        config.p2p.listen = vec![format!("/ip4/0.0.0.0/tcp/{}", layout.p2p_port)];
        config.p2p.bootstrap = others
            .iter()
            .map(|(host, peer)| {
                format!("/dns4/{host}/tcp/{}/p2p/{}", layout.p2p_port, peer.peer_id)
            })
            .collect();
        config.p2p.allowlist = others.iter().map(|(_, p)| p.peer_id.to_string()).collect();
        config.p2p.min_bootstrap_peers = 1;
        config.p2p.swarm_key_file = PathBuf::from(SWARM_KEY_FILE);
        config.admin.listen = layout.admin_listen.clone();
        config.replication.factor = layout.replication_factor;
        config.replication.write_quorum = config
            .replication
            .write_quorum
            .min(layout.replication_factor);
        let text = config.to_toml()?;
        // What we write must be what the daemon accepts.
        Config::from_toml(&text, &path)?.validate()?;
        write_secret(&path, text.as_bytes(), true)?;
    }
    write_secret(&key_file, key.as_bytes(), false)?;
    if let Some(owner) = layout.owner {
        for node in &nodes {
            chown_tree(&node.data_dir, owner)?;
        }
        chown_tree(&key_file, owner)?;
    }
    Ok(nodes)
}

fn chown_tree(path: &Path, (uid, gid): (u32, u32)) -> Result<()> {
    let io = |source| Error::Io {
        what: "handing the cluster's files to the daemon's user",
        source,
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io)?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io)? {
            chown_tree(&entry.map_err(io)?.path(), (uid, gid))?;
        }
    }
    Ok(())
}

/// Host names become folder names and DNS names: letters, digits and '-', unique.
fn check_hosts(hosts: &[String]) -> Result<()> {
    if hosts.len() < 2 {
        return Err(Error::BadRequest(
            "a cluster needs at least two hosts".into(),
        ));
    }
    for (i, host) in hosts.iter().enumerate() {
        let valid = !host.is_empty()
            && host.len() <= 63
            && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !host.starts_with('-');
        if !valid {
            return Err(Error::BadRequest(format!(
                "{host:?} is not a host name (letters, digits and '-')"
            )));
        }
        if hosts[..i].contains(host) {
            return Err(Error::BadRequest(format!("{host} is named twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::load_config;

    fn layout(hosts: &[&str]) -> ClusterLayout {
        ClusterLayout {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            p2p_port: 4001,
            admin_listen: "0.0.0.0:5001".into(),
            replication_factor: 3,
            owner: None,
        }
    }

    #[test]
    fn every_node_knows_the_others_by_pinned_id_and_shares_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = init_cluster(tmp.path(), &layout(&["node1", "node2", "node3"])).unwrap();
        let key = std::fs::read(tmp.path().join(SWARM_KEY_FILE)).unwrap();
        for (i, node) in nodes.iter().enumerate() {
            let config = load_config(Some(&node.data_dir), None).unwrap();
            let others: Vec<String> = nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, n)| n.peer_id.to_string())
                .collect();
            assert_eq!(
                config
                    .allowlist
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                others
            );
            assert_eq!(
                config
                    .bootstrap
                    .iter()
                    .map(|b| b.peer_id.to_string())
                    .collect::<Vec<_>>(),
                others
            );
            assert!(config.raw().p2p.bootstrap[0].starts_with("/dns4/node"));
            assert_eq!(config.replication_factor.get(), 3);
            assert_eq!(
                std::fs::read(config.resolve(&config.raw().p2p.swarm_key_file)).unwrap(),
                key
            );
        }
        // A second run refuses to replace the cluster.
        let again = init_cluster(tmp.path(), &layout(&["node1", "node2", "node3"]));
        assert!(matches!(again, Err(Error::Exists(_))), "{again:?}");
    }

    #[test]
    fn bad_host_lists_are_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        for hosts in [&["only"][..], &["a", "a"], &["a", "../b"], &["a", ""]] {
            assert!(
                init_cluster(tmp.path(), &layout(hosts)).is_err(),
                "{hosts:?}"
            );
        }
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
