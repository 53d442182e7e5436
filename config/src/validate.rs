//! Validation: turns a parsed [`Config`] into a [`ValidConfig`] whose typed fields can be used
//! without further checks, or an error that names the key and the fix. Nothing is silently reset.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};

use crate::error::ConfigError;
use crate::schema::Config;
use crate::units::Size;

/// The largest block any node accepts: the IPFS interoperability limit (bitswap refuses more).
pub const MAX_BLOCK_SIZE_LIMIT: u64 = 2 * Size::MIB;
/// The smallest `storage.max_block_size` that still holds a 256 KiB UnixFS chunk with its framing.
pub const MIN_BLOCK_SIZE_LIMIT: u64 = 256 * Size::KIB + Size::KIB;
/// More copies than this is a configuration mistake, not a durability goal.
pub const MAX_REPLICATION_FACTOR: u32 = 64;

/// A bootstrap entry: where to dial and the identity the far end must prove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapPeer {
    pub addr: Multiaddr,
    pub peer_id: PeerId,
}

/// A configuration that passed [`Config::validate`].
#[derive(Clone, Debug)]
pub struct ValidConfig {
    raw: Config,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<BootstrapPeer>,
    pub allowlist: Vec<PeerId>,
    /// `replication.operators`, parsed.
    pub operators: Vec<PeerId>,
    pub replication_factor: NonZeroU32,
    pub write_quorum: NonZeroU32,
    pub admin_listen: SocketAddr,
    /// `None` when the metrics endpoint is switched off.
    pub metrics_listen: Option<SocketAddr>,
    /// `None` unless `gateway.enabled`.
    pub gateway_listen: Option<SocketAddr>,
}

impl ValidConfig {
    pub fn raw(&self) -> &Config {
        &self.raw
    }

    pub fn data_dir(&self) -> &Path {
        &self.raw.data_dir
    }

    /// Resolves a configured path against the data directory (absolute paths stay as they are).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.raw.data_dir.join(path)
    }

    pub fn tls_enabled(&self) -> bool {
        !self.raw.admin.tls_cert_file.as_os_str().is_empty()
    }
}

impl Config {
    /// Checks every value; the first problem found is returned, naming its key and the fix.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "data_dir",
                "is empty",
                "set it to the folder that holds the node's data, e.g. \"/var/lib/cairn\"",
            ));
        }
        let listen = self.validate_listen()?;
        let bootstrap = self.validate_bootstrap()?;
        let allowlist = self.validate_allowlist()?;
        self.validate_limits()?;
        self.validate_storage()?;
        let (replication_factor, write_quorum) = self.validate_replication()?;
        let operators = self.validate_operators()?;
        self.validate_scrub()?;
        let admin_listen = self.validate_admin()?;
        let metrics_listen = self.validate_metrics()?;
        let gateway_listen = self.validate_gateway()?;
        self.validate_log()?;
        Ok(ValidConfig {
            raw: self,
            listen,
            bootstrap,
            allowlist,
            operators,
            replication_factor,
            write_quorum,
            admin_listen,
            metrics_listen,
            gateway_listen,
        })
    }

    fn validate_listen(&self) -> Result<Vec<Multiaddr>, ConfigError> {
        if self.p2p.listen.is_empty() {
            return Err(ConfigError::invalid(
                "p2p.listen",
                "is empty, so no peer could reach this node",
                "add an address such as \"/ip4/0.0.0.0/tcp/4101\"",
            ));
        }
        self.p2p
            .listen
            .iter()
            .map(|text| {
                let addr = parse_multiaddr("p2p.listen", text)?;
                if addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                    return Err(ConfigError::invalid(
                        "p2p.listen",
                        format!("{text:?} names a peer ID"),
                        "drop the /p2p/… part: a listen address is this node's own",
                    ));
                }
                Ok(addr)
            })
            .collect()
    }

    fn validate_bootstrap(&self) -> Result<Vec<BootstrapPeer>, ConfigError> {
        let peers = self
            .p2p
            .bootstrap
            .iter()
            .map(|text| {
                let addr = parse_multiaddr("p2p.bootstrap", text)?;
                match addr.iter().last() {
                    Some(Protocol::P2p(peer_id)) => Ok(BootstrapPeer { addr, peer_id }),
                    _ => Err(ConfigError::invalid(
                        "p2p.bootstrap",
                        format!("{text:?} does not end in /p2p/<peer-id>"),
                        "pin every bootstrap entry to its peer ID (`cairn id` on that node prints it), \
                         e.g. \"/ip4/10.0.0.2/tcp/4101/p2p/12D3KooW…\"",
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let wanted = self.p2p.min_bootstrap_peers as usize;
        if !peers.is_empty() && (wanted == 0 || wanted > peers.len()) {
            return Err(ConfigError::invalid(
                "p2p.min_bootstrap_peers",
                format!("is {wanted} with {} bootstrap entries", peers.len()),
                format!("set it between 1 and {}", peers.len()),
            ));
        }
        Ok(peers)
    }

    fn validate_allowlist(&self) -> Result<Vec<PeerId>, ConfigError> {
        peer_ids(
            "p2p.allowlist",
            &self.p2p.allowlist,
            "list peer IDs as `cairn id` prints them, e.g. \"12D3KooW…\"",
        )
    }

    fn validate_operators(&self) -> Result<Vec<PeerId>, ConfigError> {
        peer_ids(
            "replication.operators",
            &self.replication.operators,
            "list operator key IDs as `cairn operator-key new` prints them, e.g. \"12D3KooW…\"",
        )
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.p2p.limits;
        positive("p2p.limits.max_connections", limits.max_connections.into())?;
        positive(
            "p2p.limits.max_connections_per_peer",
            limits.max_connections_per_peer.into(),
        )?;
        positive(
            "p2p.limits.max_connections_per_ip",
            limits.max_connections_per_ip.into(),
        )?;
        positive(
            "p2p.limits.max_pending_per_ip",
            limits.max_pending_per_ip.into(),
        )?;
        positive(
            "p2p.limits.handshakes_per_second_per_ip",
            limits.handshakes_per_second_per_ip.into(),
        )?;
        for (key, value) in [
            (
                "p2p.limits.kad_requests_per_second",
                u64::from(limits.kad_requests_per_second),
            ),
            (
                "p2p.limits.kad_requests_per_second_per_ip",
                u64::from(limits.kad_requests_per_second_per_ip),
            ),
            (
                "p2p.limits.strangers_kad_requests_per_second",
                u64::from(limits.strangers_kad_requests_per_second),
            ),
            (
                "p2p.limits.requests_per_second_per_ip",
                u64::from(limits.requests_per_second_per_ip),
            ),
            (
                "p2p.limits.bytes_per_second_per_ip",
                limits.bytes_per_second_per_ip.bytes(),
            ),
            (
                "p2p.limits.strangers_requests_per_second",
                u64::from(limits.strangers_requests_per_second),
            ),
            (
                "p2p.limits.strangers_bytes_per_second",
                limits.strangers_bytes_per_second.bytes(),
            ),
        ] {
            positive(key, value)?;
        }
        positive(
            "p2p.limits.requests_per_second",
            limits.requests_per_second.into(),
        )?;
        positive(
            "p2p.limits.bytes_per_second",
            limits.bytes_per_second.bytes(),
        )?;
        positive(
            "p2p.bootstrap_timeout",
            self.p2p.bootstrap_timeout.get().as_millis() as u64,
        )?;
        if limits.bytes_per_second.bytes() < self.storage.max_block_size.bytes() {
            return Err(ConfigError::invalid(
                "p2p.limits.bytes_per_second",
                format!(
                    "is {} but storage.max_block_size is {}",
                    limits.bytes_per_second, self.storage.max_block_size
                ),
                "keep it at or above storage.max_block_size, or no peer could ever be sent the \
                 largest block",
            ));
        }
        if limits.max_connections_per_peer > limits.max_connections {
            return Err(ConfigError::invalid(
                "p2p.limits.max_connections_per_peer",
                format!(
                    "is {} but p2p.limits.max_connections is {}",
                    limits.max_connections_per_peer, limits.max_connections
                ),
                "keep it at or below p2p.limits.max_connections",
            ));
        }
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let block = self.storage.max_block_size.bytes();
        if !(MIN_BLOCK_SIZE_LIMIT..=MAX_BLOCK_SIZE_LIMIT).contains(&block) {
            return Err(ConfigError::invalid(
                "storage.max_block_size",
                format!("is {}", self.storage.max_block_size),
                format!(
                    "set it between {} (a 256 KiB chunk with its framing) and {} (what other IPFS \
                     nodes accept)",
                    Size(MIN_BLOCK_SIZE_LIMIT),
                    Size(MAX_BLOCK_SIZE_LIMIT)
                ),
            ));
        }
        let quota = self.storage.max_bytes.bytes();
        if quota != 0 && quota < block {
            return Err(ConfigError::invalid(
                "storage.max_bytes",
                format!("is {}, smaller than one block", self.storage.max_bytes),
                format!(
                    "set it to 0 (no quota) or at least storage.max_block_size ({})",
                    self.storage.max_block_size
                ),
            ));
        }
        Ok(())
    }

    fn validate_replication(&self) -> Result<(NonZeroU32, NonZeroU32), ConfigError> {
        let r = &self.replication;
        let factor = NonZeroU32::new(r.factor)
            .filter(|f| f.get() <= MAX_REPLICATION_FACTOR)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "replication.factor",
                    format!("is {}", r.factor),
                    format!("set it between 1 and {MAX_REPLICATION_FACTOR} (3 is a good start)"),
                )
            })?;
        let quorum = NonZeroU32::new(r.write_quorum)
            .filter(|q| *q <= factor)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "replication.write_quorum",
                    format!("is {} with replication.factor {}", r.write_quorum, r.factor),
                    format!("set it between 1 and replication.factor ({})", r.factor),
                )
            })?;
        positive(
            "replication.repair_grace",
            r.repair_grace.get().as_millis() as u64,
        )?;
        positive(
            "replication.repair_bytes_per_second",
            r.repair_bytes_per_second.bytes(),
        )?;
        positive(
            "replication.audit_interval",
            r.audit_interval.get().as_millis() as u64,
        )?;
        if r.max_factor < r.factor || r.max_factor > MAX_REPLICATION_FACTOR {
            return Err(ConfigError::invalid(
                "replication.max_factor",
                format!("is {} with replication.factor {}", r.max_factor, r.factor),
                format!(
                    "set it between replication.factor ({}) and {MAX_REPLICATION_FACTOR}",
                    r.factor
                ),
            ));
        }
        for (key, duration) in [
            ("replication.audit_deadline", r.audit_deadline),
            ("replication.unpin_grace", r.unpin_grace),
            ("replication.replica_fetch_timeout", r.replica_fetch_timeout),
        ] {
            positive(key, duration.get().as_millis() as u64)?;
        }
        positive("replication.max_pin_bytes", r.max_pin_bytes.bytes())?;
        positive(
            "replication.max_share_per_peer",
            r.max_share_per_peer.bytes(),
        )?;
        Ok((factor, quorum))
    }

    fn validate_scrub(&self) -> Result<(), ConfigError> {
        positive(
            "scrub.interval",
            self.scrub.interval.get().as_millis() as u64,
        )?;
        positive(
            "scrub.bytes_per_second",
            self.scrub.bytes_per_second.bytes(),
        )
    }

    fn validate_admin(&self) -> Result<SocketAddr, ConfigError> {
        let admin = &self.admin;
        let addr = parse_socket_addr("admin.listen", &admin.listen)?;
        positive(
            "admin.requests_per_second",
            admin.requests_per_second.into(),
        )?;
        positive(
            "admin.failed_auth_per_second",
            admin.failed_auth_per_second.into(),
        )?;
        for (key, path) in [
            ("admin.token_file", &admin.token_file),
            ("admin.readonly_token_file", &admin.readonly_token_file),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    "is empty",
                    "name the token file, relative to data_dir or absolute",
                ));
            }
        }
        if admin.token_file == admin.readonly_token_file {
            return Err(ConfigError::invalid(
                "admin.readonly_token_file",
                "is the same file as admin.token_file",
                "give the read-only token its own file, e.g. \"readonly.token\"",
            ));
        }
        let cert = admin.tls_cert_file.as_os_str().is_empty();
        let key = admin.tls_key_file.as_os_str().is_empty();
        if cert != key {
            let missing = if cert {
                "admin.tls_cert_file"
            } else {
                "admin.tls_key_file"
            };
            return Err(ConfigError::invalid(
                missing,
                "is empty while its TLS partner is set",
                "set both admin.tls_cert_file and admin.tls_key_file, or neither",
            ));
        }
        Ok(addr)
    }

    fn validate_metrics(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.metrics.listen.is_empty() {
            return Ok(None);
        }
        parse_socket_addr("metrics.listen", &self.metrics.listen).map(Some)
    }

    fn validate_gateway(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let gateway = &self.gateway;
        if !gateway.enabled {
            return Ok(None);
        }
        let addr = parse_socket_addr("gateway.listen", &gateway.listen)?;
        let counts = [
            ("gateway.requests_per_second", gateway.requests_per_second),
            (
                "gateway.max_streams_per_client",
                gateway.max_streams_per_client,
            ),
            ("gateway.max_streams", gateway.max_streams),
        ];
        for (key, value) in counts {
            if value == 0 {
                return Err(ConfigError::invalid(
                    key,
                    "is 0, which refuses every request",
                    "set it above 0, or set gateway.enabled = false",
                ));
            }
        }
        if gateway.bytes_per_second.bytes() < 1024 {
            return Err(ConfigError::invalid(
                "gateway.bytes_per_second",
                "is under 1 KiB",
                "set a byte rate such as \"64 MiB\"",
            ));
        }
        Ok(Some(addr))
    }

    fn validate_log(&self) -> Result<(), ConfigError> {
        const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
        // Each comma-separated directive is a level or `target=level`.
        let directive_ok = |d: &str| match d.split_once('=') {
            None => LEVELS.contains(&d),
            Some((target, lvl)) => {
                !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
                    && LEVELS.contains(&lvl)
            }
        };
        let valid = self.log.level.trim().split(',').all(directive_ok);
        if !valid {
            return Err(ConfigError::invalid(
                "log.level",
                format!("{:?} is not a level or filter", self.log.level),
                "use one of error, warn, info, debug, trace, or a filter like \"info,cairn_p2p=debug\"",
            ));
        }
        Ok(())
    }
}

fn peer_ids(
    key: &'static str,
    texts: &[String],
    fix: &'static str,
) -> Result<Vec<PeerId>, ConfigError> {
    texts
        .iter()
        .map(|text| {
            text.parse::<PeerId>().map_err(|e| {
                ConfigError::invalid(key, format!("{text:?} is not a peer ID ({e})"), fix)
            })
        })
        .collect()
}

fn positive(key: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(
            key,
            "is 0",
            "set a value greater than 0",
        ));
    }
    Ok(())
}

fn parse_multiaddr(key: &'static str, text: &str) -> Result<Multiaddr, ConfigError> {
    text.parse::<Multiaddr>().map_err(|e| {
        ConfigError::invalid(
            key,
            format!("{text:?} is not a multiaddr ({e})"),
            "write it like \"/ip4/10.0.0.2/tcp/4101\"",
        )
    })
}

fn parse_socket_addr(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse::<SocketAddr>().map_err(|e| {
        ConfigError::invalid(
            key,
            format!("{text:?} is not an address ({e})"),
            "write IP:PORT, e.g. \"127.0.0.1:4102\"",
        )
    })
}
