//! The command line's shape: every command, its arguments and flags (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "A hardened peer-to-peer content-addressed storage node"
)]
pub(crate) struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a data directory: config, identity key, admin and read-only tokens (mode 0600).
    Init {
        /// The node's data directory [default: CAIRN_DATA_DIR, else /var/lib/cairn]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Replace existing files (a new identity means a new peer ID).
        #[arg(long, conflicts_with = "if_missing")]
        force: bool,
        /// Do nothing when the data directory already holds a config (for service start-up).
        #[arg(long)]
        if_missing: bool,
    },
    /// Create the data directories of a private cluster: one folder per host, a shared swarm
    /// key, every node's bootstrap list and allowlist filled with the others' peer IDs.
    InitCluster {
        /// Host names the nodes reach each other by (e.g. docker-compose service names).
        #[arg(required = true)]
        hosts: Vec<String>,
        /// Where the folders go (one per host, plus swarm.key).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 4001)]
        p2p_port: u16,
        #[arg(long, default_value = "0.0.0.0:5001")]
        admin_listen: String,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
        replication: u32,
        /// Do nothing when `out` already holds a cluster (for a one-shot init service).
        #[arg(long)]
        if_missing: bool,
        /// Hand the files to UID:GID (an init container running as root for the daemon's user).
        #[arg(long, value_parser = parse_owner)]
        owner: Option<(u32, u32)>,
    },
    /// Encrypt the node's identity key in place with a passphrase (then set
    /// identity.passphrase_file, or pass the systemd credential identity.passphrase).
    EncryptKey {
        /// A file (mode 0600) holding the passphrase, at least 12 bytes.
        #[arg(long)]
        passphrase_file: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the node's peer ID and configured listen addresses (no daemon needed).
    Id {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replace the admin token (or --readonly, the read-only token) with a new one, written to
    /// its token file on the node's host; the old one stops working at once.
    RotateToken {
        #[arg(long)]
        readonly: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Exit 0 when the daemon answers the gRPC health check as serving (no token needed).
    Health {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run the node in the foreground until SIGTERM or Ctrl-C.
    Daemon {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// `cairn init` the data directory first when it holds no config (containers).
        #[arg(long, requires = "data_dir")]
        init: bool,
    },
    /// Add files; prints each root CID (CIDv1 unless --cid-version 0).
    Add {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=1))]
        cid_version: u32,
        /// Encrypt here before sending; prints a capability (root CID and key) instead of a CID.
        /// The daemon never sees the key: keep the capability safe.
        #[arg(long)]
        encrypt: bool,
        #[command(flatten)]
        replicas: ReplicationArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print a file's bytes (or write them to -o FILE); a capability is decrypted here.
    Cat {
        /// A CID, or a capability from `add --encrypt`.
        cid: String,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Save a file's bytes to disk (decrypted, for a capability); -o names the file
    /// [default: the root CID, in the current folder].
    Get {
        /// A CID, or a capability from `add --encrypt`.
        cid: String,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The node at a glance.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Pins: what the node keeps.
    Pin {
        #[command(subcommand)]
        action: PinAction,
    },
    /// Single blocks.
    Block {
        #[command(subcommand)]
        action: BlockAction,
    },
    /// The block store as a whole.
    Repo {
        #[command(subcommand)]
        action: RepoAction,
    },
    /// CAR v1 archives: move DAGs to and from other IPFS tools.
    Car {
        #[command(subcommand)]
        action: CarAction,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Other nodes: who is connected, connect by address, ban.
    Peers {
        #[command(subcommand)]
        action: PeersAction,
    },
    /// Operator keys: the authority to unpin or restore any pin, held outside the cluster.
    OperatorKey {
        #[command(subcommand)]
        action: OperatorKeyAction,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PeersAction {
    /// Connected peers and their addresses.
    Ls {
        /// Also the peers in Kademlia's routing table that are not connected now.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Dial a peer; an address ending in /p2p/<peer-id> must prove that identity.
    Connect {
        multiaddr: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Disconnect a peer and refuse it for a while.
    Ban {
        peer_id: String,
        /// How long, e.g. "1h", "30m" [default: 1h]
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum CarAction {
    /// Write CID and every block below it to FILE.
    Export {
        cid: String,
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Store every block of FILE (verified) and pin its roots.
    Import {
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PinAction {
    /// Pin a DAG (fetched from peers when missing), recursively and replicated unless --direct.
    Add {
        cid: String,
        /// Pin this block alone, on this node only.
        #[arg(long)]
        direct: bool,
        #[command(flatten)]
        replicas: ReplicationArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A pin's replication now: holders (audited), live copies, failure budget.
    Status {
        cid: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove this node's pin, cluster-wide for a recursive pin. Once no owner pins the root,
    /// its holders keep the blocks for replication.unpin_grace (`pin restore` undoes it).
    Rm {
        cid: String,
        /// Unpin every owner's pin with this operator key (see `cairn operator-key`): it must be
        /// listed in replication.operators. Without it, only this node's own pin goes.
        #[arg(long, value_name = "FILE")]
        operator_key: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Undo an unpin within replication.unpin_grace: every holder pins its copy again.
    Restore {
        cid: String,
        /// Restore with this operator key instead of as the node's own pin.
        #[arg(long, value_name = "FILE")]
        operator_key: Option<PathBuf>,
        /// Copies to keep (with --operator-key; default: the pin's last factor).
        #[arg(long)]
        replication: Option<u32>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List pins.
    Ls {
        /// List roots unpinned and waiting out the unpin grace instead, with when each expires.
        #[arg(long)]
        unpinned: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum OperatorKeyAction {
    /// Make a new operator key (kept by the operator, never on a node); prints its ID for
    /// replication.operators.
    New {
        file: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print an operator key's ID.
    Id { file: PathBuf },
}

#[derive(Subcommand, Debug)]
pub(crate) enum BlockAction {
    /// Store a file's bytes as one block; prints its CID.
    Put {
        file: PathBuf,
        /// raw or dag-pb
        #[arg(long, default_value = "raw")]
        codec: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Write a block's bytes to stdout.
    Get {
        cid: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A block's size and when a scrub last verified it.
    Stat {
        cid: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a block that no pin keeps.
    Rm {
        cid: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RepoAction {
    /// Blocks, bytes, quarantined blocks and the quota.
    Stat {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Re-verify every block now; exits non-zero when one is corrupt.
    Verify {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run a scrub pass now, at scrub.bytes_per_second.
    Scrub {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove every block no pin keeps.
    Gc {
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// How many copies a new pin gets, and whether the call waits for them.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct ReplicationArgs {
    /// Copies to keep on the cluster [default: the daemon's replication.factor]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) replication: Option<u32>,
    /// Return once stored and pinned here, without waiting for the replicas' receipts.
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// How a client command reaches the daemon.
#[derive(Args, Debug)]
pub(crate) struct ApiArgs {
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Admin API address [default: from the config's admin.listen]
    #[arg(long)]
    pub(crate) api: Option<String>,
    /// Token file [default: the config's admin.token_file]
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Certificate to trust for an https:// API [default: the config's admin.tls_cert_file]
    #[arg(long)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Send the token over plain http:// to an address that is not this machine's loopback
    /// (anyone on the path can read it; prefer TLS)
    #[arg(long)]
    pub(crate) insecure: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigAction {
    /// Check a config file (with CAIRN_… overrides applied); exit non-zero naming the bad key.
    Validate { file: Option<PathBuf> },
    /// Print the effective configuration, every key included.
    Show { file: Option<PathBuf> },
}

fn parse_owner(text: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not UID:GID"))?;
    let number = |n: &str| {
        n.parse::<u32>()
            .map_err(|_| format!("{n:?} is not a numeric id"))
    };
    Ok((number(uid)?, number(gid)?))
}
