//! `cairn`: the node's command line — the daemon and its client. Exit status 0 on success,
//! non-zero with a one-line reason on stderr otherwise.
#![forbid(unsafe_code)]
// The CLI's output is stdout.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cairn_config::{LogFormat, ValidConfig};
use cairn_node::encrypt::{Capability, Decryptor, Encryptor};
use cairn_node::init::{init, load_config, load_identity};
use cairn_node::unixfs::CHUNK_SIZE;
use cairn_node::{Node, client, progress};
use cairn_proto::admin;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "A hardened peer-to-peer content-addressed storage node"
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
}

#[derive(Subcommand, Debug)]
enum PeersAction {
    /// Connected peers and their addresses.
    Ls {
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
enum CarAction {
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
enum PinAction {
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
    /// Remove a pin, cluster-wide for a recursive pin (blocks stay until `repo gc`).
    Rm {
        cid: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List pins.
    Ls {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand, Debug)]
enum BlockAction {
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
enum RepoAction {
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
struct ReplicationArgs {
    /// Copies to keep on the cluster [default: the daemon's replication.factor]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    replication: Option<u32>,
    /// Return once stored and pinned here, without waiting for the replicas' receipts.
    #[arg(long)]
    no_wait: bool,
}

/// How a client command reaches the daemon.
#[derive(Args, Debug)]
struct ApiArgs {
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Admin API address [default: from the config's admin.listen]
    #[arg(long)]
    api: Option<String>,
    /// Token file [default: the config's admin.token_file]
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Certificate to trust for an https:// API [default: the config's admin.tls_cert_file]
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

impl ApiArgs {
    async fn connect(&self) -> anyhow::Result<client::Client> {
        let (config, url, ca) = self.endpoint()?;
        let token_file = match &self.token_file {
            Some(f) => f.clone(),
            None => config.resolve(&config.raw().admin.token_file),
        };
        let token = cairn_node::secrets::read_secret(&token_file)?;
        let token = String::from_utf8(token).context("the token file is not text")?;
        Ok(client::connect_with(&url, &token, ca.as_deref()).await?)
    }

    /// The config, the API's URL and the certificate to trust, from the flags and the config.
    fn endpoint(&self) -> anyhow::Result<(ValidConfig, String, Option<Vec<u8>>)> {
        let config = load_config(self.data_dir.as_deref(), self.config.as_deref())?;
        let url = match &self.api {
            Some(url) => url.clone(),
            None => {
                let mut addr = config.admin_listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let scheme = if config.tls_enabled() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{addr}")
            }
        };
        let ca_file = match &self.ca_cert {
            Some(file) => Some(file.clone()),
            None if config.tls_enabled() => Some(config.resolve(&config.raw().admin.tls_cert_file)),
            None => None,
        };
        let ca = match ca_file {
            Some(file) => Some(
                std::fs::read(&file)
                    .with_context(|| format!("cannot read the certificate {}", file.display()))?,
            ),
            None => None,
        };
        Ok((config, url, ca))
    }
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Check a config file (with CAIRN_… overrides applied); exit non-zero naming the bad key.
    Validate { file: Option<PathBuf> },
    /// Print the effective configuration, every key included.
    Show { file: Option<PathBuf> },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::EncryptKey {
            passphrase_file,
            data_dir,
            config,
        } => {
            let config = load_config(data_dir.as_deref(), config.as_deref())?;
            let path = cairn_node::init::encrypt_identity(&config, &passphrase_file)?;
            report(
                cli.json,
                json!({ "encrypted": path }),
                &format!(
                    "{} is encrypted; the daemon now needs identity.passphrase_file (or the \
                     identity.passphrase credential)",
                    path.display()
                ),
            );
        }
        Command::RotateToken { readonly, api } => {
            let mut client = api.connect().await?;
            let rotated = client
                .rotate_token(admin::RotateTokenRequest { readonly })
                .await?
                .into_inner();
            report(
                cli.json,
                json!({ "token_file": rotated.token_file }),
                &format!("new token written to {}", rotated.token_file),
            );
        }
        Command::Health { api } => {
            let (_, url, ca) = api.endpoint()?;
            anyhow::ensure!(
                client::serving(&url, ca.as_deref()).await?,
                "{url} is not serving"
            );
            report(cli.json, json!({ "serving": true }), "serving");
        }
        Command::InitCluster {
            hosts,
            out,
            p2p_port,
            admin_listen,
            replication,
            if_missing,
            owner,
        } => {
            if if_missing && out.join(cairn_node::cluster_init::SWARM_KEY_FILE).exists() {
                return Ok(());
            }
            let layout = cairn_node::cluster_init::ClusterLayout {
                hosts: hosts.clone(),
                p2p_port,
                admin_listen,
                replication_factor: replication,
                owner,
            };
            let nodes = cairn_node::cluster_init::init_cluster(&out, &layout)?;
            for (host, node) in hosts.iter().zip(&nodes) {
                report(
                    cli.json,
                    json!({ "host": host, "peer_id": node.peer_id.to_string(),
                            "data_dir": node.data_dir }),
                    &format!("{host} {}", node.peer_id),
                );
            }
        }
        Command::Daemon {
            data_dir,
            config,
            init: init_first,
        } => {
            if let Some(dir) = data_dir.as_deref().filter(|_| init_first)
                && !dir.join(cairn_node::init::CONFIG_FILE).exists()
            {
                let done = init(dir, false)?;
                eprintln!(
                    "initialised {} as peer {}",
                    done.data_dir.display(),
                    done.peer_id
                );
            }
            let config = load_config(data_dir.as_deref(), config.as_deref())?;
            init_logging(&config);
            daemon(config).await?;
        }
        Command::Add {
            paths,
            cid_version,
            encrypt,
            replicas,
            api,
        } => {
            let mut client = api.connect().await?;
            let options = admin::AddOptions {
                cid_version: Some(cid_version),
                replication: replicas.replication,
                no_wait: replicas.no_wait,
            };
            for path in paths {
                let (added, capability) = add_file(&mut client, &path, options, encrypt).await?;
                let capability = capability.map(|c| c.to_string());
                if cli.json {
                    let out = json!({
                        "cid": added.cid, "size": added.size, "blocks": added.blocks,
                        "name": path.display().to_string(), "capability": capability,
                        "replication_factor": added.replication_factor,
                        "holders": added.holders, "under_replicated": added.under_replicated,
                    });
                    println!("{out}");
                } else {
                    println!("{}", capability.unwrap_or(added.cid.clone()));
                    if added.under_replicated {
                        eprintln!(
                            "{}: under-replicated for now: {} of {} copies confirmed",
                            added.cid,
                            added.holders.len(),
                            added.replication_factor
                        );
                    }
                }
            }
        }
        Command::Cat { cid, output, api } => {
            let mut client = api.connect().await?;
            cat(&mut client, cid, output).await?;
        }
        Command::Get { cid, output, api } => {
            let output = match output {
                Some(path) => path,
                None => PathBuf::from(match cid.parse::<Capability>() {
                    Ok(cap) => cap.root.to_string(),
                    Err(_) => cid.trim().to_owned(),
                }),
            };
            let mut client = api.connect().await?;
            cat(&mut client, cid, Some(output.clone())).await?;
            report(
                cli.json,
                json!({ "file": output }),
                &format!("saved {}", output.display()),
            );
        }
        Command::Status { api } => {
            let mut client = api.connect().await?;
            let s = client.status(admin::StatusRequest {}).await?.into_inner();
            if cli.json {
                let out = json!({
                    "peer_id": s.peer_id, "version": s.version, "blocks": s.blocks,
                    "bytes": s.bytes, "pins": s.pins, "quarantined_blocks": s.quarantined_blocks,
                    "connected_peers": s.connected_peers, "listen_addrs": s.listen_addrs,
                    "under_replicated_pins": s.under_replicated_pins,
                    "min_failure_budget": s.min_failure_budget,
                });
                println!("{out}");
            } else {
                println!("peer ID      {}", s.peer_id);
                println!("version      {}", s.version);
                println!("peers        {}", s.connected_peers);
                println!("listening    {}", s.listen_addrs.join(" "));
                println!("blocks       {} ({} bytes)", s.blocks, s.bytes);
                println!("pins         {}", s.pins);
                println!("quarantined  {}", s.quarantined_blocks);
                println!("under-replicated pins  {}", s.under_replicated_pins);
                if let Some(budget) = s.min_failure_budget {
                    println!("min failure budget     {budget}");
                }
            }
        }
        Command::Init {
            data_dir,
            force,
            if_missing,
        } => {
            let dir = match data_dir {
                Some(d) => d,
                None => load_config(None, None)?.data_dir().to_owned(),
            };
            if if_missing && dir.join(cairn_node::init::CONFIG_FILE).exists() {
                return Ok(());
            }
            let done = init(&dir, force)?;
            if cli.json {
                let out = json!({
                    "peer_id": done.peer_id.to_string(),
                    "data_dir": done.data_dir,
                    "config": done.config_file,
                });
                println!("{out}");
            } else {
                println!("{}", done.peer_id);
                eprintln!(
                    "initialised {} (config: {})",
                    done.data_dir.display(),
                    done.config_file.display()
                );
            }
        }
        Command::Id { data_dir, config } => {
            let config = load_config(data_dir.as_deref(), config.as_deref())?;
            let identity = load_identity(&config)?;
            let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
            if cli.json {
                let out = json!({ "peer_id": identity.peer_id().to_string(), "addrs": listen });
                println!("{out}");
            } else {
                println!("{}", identity.peer_id());
                for addr in listen {
                    println!("{addr}");
                }
            }
        }
        Command::Pin { action } => pin_command(action, cli.json).await?,
        Command::Block { action } => block_command(action, cli.json).await?,
        Command::Repo { action } => repo_command(action, cli.json).await?,
        Command::Car { action } => car_command(action, cli.json).await?,
        Command::Peers { action } => peers_command(action, cli.json).await?,
        Command::Config { action } => match action {
            ConfigAction::Validate { file } => {
                let config = cairn_config::Config::load(file.as_deref())?;
                config.validate()?;
                if cli.json {
                    println!("{}", json!({ "valid": true }));
                } else {
                    eprintln!("config is valid");
                }
            }
            ConfigAction::Show { file } => {
                let config = cairn_config::Config::load(file.as_deref())?;
                if cli.json {
                    let out = serde_json::to_string(&config).context("rendering the config")?;
                    println!("{out}");
                } else {
                    print!("{}", config.to_toml().context("rendering the config")?);
                }
            }
        },
    }
    Ok(())
}

async fn pin_command(action: PinAction, json: bool) -> anyhow::Result<()> {
    match action {
        PinAction::Add {
            cid,
            direct,
            replicas,
            api,
        } => {
            let mut client = api.connect().await?;
            let pinned = client
                .pin_add(admin::PinAddRequest {
                    cid: cid.clone(),
                    direct,
                    replication: replicas.replication,
                    no_wait: replicas.no_wait,
                })
                .await?
                .into_inner();
            report(
                json,
                json!({
                    "cid": cid, "pinned": true,
                    "replication_factor": pinned.replication_factor,
                    "holders": pinned.holders, "under_replicated": pinned.under_replicated,
                }),
                &format!("pinned {cid}"),
            );
            if pinned.under_replicated && !json {
                eprintln!(
                    "{cid}: under-replicated for now: {} of {} copies confirmed",
                    pinned.holders.len(),
                    pinned.replication_factor
                );
            }
        }
        PinAction::Status { cid, api } => {
            let mut client = api.connect().await?;
            let s = client
                .pin_status(admin::PinStatusRequest { cid })
                .await?
                .into_inner();
            if json {
                let holders: Vec<_> = s
                    .holders
                    .iter()
                    .map(|h| {
                        json!({
                            "peer_id": h.peer_id, "state": h.state,
                            "audited": h.audited, "detail": h.detail,
                        })
                    })
                    .collect();
                let out = json!({
                    "cid": s.cid, "state": s.state, "replication_factor": s.replication_factor,
                    "live_replicas": s.live_replicas, "failure_budget": s.failure_budget,
                    "holders": holders, "record_version": s.record_version,
                    "record_signer": s.record_signer,
                });
                println!("{out}");
            } else {
                println!("cid             {}", s.cid);
                println!("state           {}", s.state);
                println!(
                    "live replicas   {} of {}",
                    s.live_replicas, s.replication_factor
                );
                println!("failure budget  {}", s.failure_budget);
                for h in &s.holders {
                    let audited = if h.audited { "audited" } else { "" };
                    println!("  {} {} {} {}", h.peer_id, h.state, audited, h.detail);
                }
            }
        }
        PinAction::Rm { cid, api } => {
            let mut client = api.connect().await?;
            client
                .pin_rm(admin::PinRmRequest { cid: cid.clone() })
                .await?;
            report(
                json,
                json!({ "cid": cid, "pinned": false }),
                &format!("unpinned {cid}"),
            );
        }
        PinAction::Ls { api } => {
            let mut client = api.connect().await?;
            let pins = client
                .pin_ls(admin::PinLsRequest {})
                .await?
                .into_inner()
                .pins;
            for pin in pins {
                report(
                    json,
                    json!({ "cid": pin.cid, "mode": pin.mode }),
                    &format!("{} {}", pin.cid, pin.mode),
                );
            }
        }
    }
    Ok(())
}

async fn block_command(action: BlockAction, json: bool) -> anyhow::Result<()> {
    match action {
        BlockAction::Put { file, codec, api } => {
            let data = tokio::fs::read(&file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut client = api.connect().await?;
            let put = client
                .block_put(admin::BlockPutRequest {
                    data: data.into(),
                    codec,
                })
                .await?
                .into_inner();
            report(json, json!({ "cid": put.cid, "size": put.size }), &put.cid);
        }
        BlockAction::Get { cid, api } => {
            let mut client = api.connect().await?;
            let block = client
                .block_get(admin::BlockGetRequest { cid })
                .await?
                .into_inner();
            let mut out = tokio::io::stdout();
            out.write_all(&block.data).await?;
            out.flush().await?;
        }
        BlockAction::Stat { cid, api } => {
            let mut client = api.connect().await?;
            let stat = client
                .block_stat(admin::BlockStatRequest { cid })
                .await?
                .into_inner();
            let text = format!(
                "{} {} bytes, last verified {}",
                stat.cid, stat.size, stat.last_verified
            );
            report(
                json,
                json!({ "cid": stat.cid, "size": stat.size, "last_verified": stat.last_verified }),
                &text,
            );
        }
        BlockAction::Rm { cid, api } => {
            let mut client = api.connect().await?;
            client
                .block_rm(admin::BlockRmRequest { cid: cid.clone() })
                .await?;
            report(
                json,
                json!({ "cid": cid, "removed": true }),
                &format!("removed {cid}"),
            );
        }
    }
    Ok(())
}

async fn repo_command(action: RepoAction, json: bool) -> anyhow::Result<()> {
    match action {
        RepoAction::Stat { api } => {
            let mut client = api.connect().await?;
            let s = client
                .repo_stat(admin::RepoStatRequest {})
                .await?
                .into_inner();
            let text = format!(
                "blocks {}\nbytes {}\nquarantined {}\nmax_bytes {}",
                s.blocks, s.bytes, s.quarantined_blocks, s.max_bytes
            );
            let value = json!({
                "blocks": s.blocks, "bytes": s.bytes,
                "quarantined_blocks": s.quarantined_blocks, "max_bytes": s.max_bytes,
            });
            report(json, value, &text);
        }
        RepoAction::Verify { api } => {
            let mut client = api.connect().await?;
            let pass = client
                .repo_verify(admin::RepoVerifyRequest {})
                .await?
                .into_inner();
            scrub_report(json, &pass);
            // As `ipfs repo verify`: a bad block is a failure scripts must see.
            if !pass.corrupt.is_empty() {
                anyhow::bail!("{} corrupt blocks found (quarantined)", pass.corrupt.len());
            }
        }
        RepoAction::Scrub { api } => {
            let mut client = api.connect().await?;
            let pass = client
                .repo_scrub(admin::RepoScrubRequest {})
                .await?
                .into_inner();
            scrub_report(json, &pass);
        }
        RepoAction::Gc { api } => {
            let mut client = api.connect().await?;
            let gc = client.repo_gc(admin::RepoGcRequest {}).await?.into_inner();
            let text = format!(
                "removed {} blocks ({} bytes)",
                gc.removed_blocks, gc.removed_bytes
            );
            report(
                json,
                json!({ "removed_blocks": gc.removed_blocks, "removed_bytes": gc.removed_bytes }),
                &text,
            );
        }
    }
    Ok(())
}

async fn peers_command(action: PeersAction, json: bool) -> anyhow::Result<()> {
    match action {
        PeersAction::Ls { api } => {
            let mut client = api.connect().await?;
            let listed = client
                .peers_ls(admin::PeersLsRequest {})
                .await?
                .into_inner();
            if json {
                let peers: Vec<_> = listed
                    .peers
                    .iter()
                    .map(|p| json!({ "peer_id": p.peer_id, "addrs": p.addrs }))
                    .collect();
                println!(
                    "{}",
                    json!({ "peers": peers, "routing_table": listed.routing_table })
                );
            } else {
                for peer in &listed.peers {
                    println!("{} {}", peer.peer_id, peer.addrs.join(" "));
                }
            }
        }
        PeersAction::Connect { multiaddr, api } => {
            let mut client = api.connect().await?;
            let connected = client
                .peers_connect(admin::PeersConnectRequest {
                    addr: multiaddr.clone(),
                })
                .await?
                .into_inner();
            report(
                json,
                json!({ "peer_id": connected.peer_id, "addr": multiaddr }),
                &format!("connected to {}", connected.peer_id),
            );
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
            report(
                json,
                json!({ "peer_id": peer_id, "banned": true }),
                &format!("banned {peer_id}"),
            );
        }
    }
    Ok(())
}

async fn car_command(action: CarAction, json: bool) -> anyhow::Result<()> {
    match action {
        CarAction::Export { cid, file, api } => {
            let mut client = api.connect().await?;
            let mut stream = client
                .car_export(admin::CarExportRequest { cid: cid.clone() })
                .await?
                .into_inner();
            let bar = progress::bar(&cid, None, false);
            let written = write_atomically(&file, async |out| {
                while let Some(chunk) = stream.message().await? {
                    out.write_all(&chunk.data).await?;
                    bar.inc(chunk.data.len() as u64);
                }
                Ok(())
            })
            .await?;
            bar.finish_and_clear();
            report(
                json,
                json!({ "cid": cid, "file": file, "bytes": written }),
                &format!("{cid} -> {}", file.display()),
            );
        }
        CarAction::Import { file, api } => {
            let mut reader = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot open {}", file.display()))?;
            let (tx, rx) = tokio::sync::mpsc::channel::<admin::CarChunk>(4);
            let mut client = api.connect().await?;
            let size = reader.metadata().await.ok().map(|m| m.len());
            let bar = progress::bar(&file.display().to_string(), size, false);
            let feeder = tokio::spawn(async move {
                loop {
                    let mut buf = vec![0u8; CHUNK_SIZE];
                    let n = reader.read(&mut buf).await?;
                    bar.inc(n as u64);
                    if n == 0 {
                        bar.finish_and_clear();
                        return Ok::<_, std::io::Error>(());
                    }
                    buf.truncate(n);
                    if tx.send(admin::CarChunk { data: buf.into() }).await.is_err() {
                        return Ok(());
                    }
                }
            });
            let imported = client
                .car_import(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            feeder.await.context("file reader failed")??;
            let imported = imported?.into_inner();
            for root in &imported.roots {
                report(
                    json,
                    json!({ "root": root, "blocks": imported.blocks, "bytes": imported.bytes }),
                    root,
                );
            }
        }
    }
    Ok(())
}

/// Writes `path` through a temporary file renamed at the end: a failure leaves no partial file.
/// Returns the bytes written.
async fn write_atomically(
    path: &std::path::Path,
    fill: impl AsyncFnOnce(&mut tokio::io::BufWriter<tokio::fs::File>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let tmp = path.with_extension("cairn-partial");
    let file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut out = tokio::io::BufWriter::new(file);
    let written = async {
        fill(&mut out).await?;
        out.flush().await?;
        out.get_ref().sync_all().await?;
        Ok::<_, anyhow::Error>(out.get_ref().metadata().await?.len())
    }
    .await;
    match written {
        Ok(bytes) => {
            tokio::fs::rename(&tmp, path).await?;
            Ok(bytes)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

fn scrub_report(json: bool, pass: &admin::RepoScrubResponse) {
    let mut text = format!(
        "checked {} blocks ({} bytes), {} corrupt",
        pass.blocks_checked,
        pass.bytes_checked,
        pass.corrupt.len()
    );
    for cid in &pass.corrupt {
        text.push_str(&format!("\ncorrupt {cid} (quarantined)"));
    }
    let value = json!({
        "blocks_checked": pass.blocks_checked, "bytes_checked": pass.bytes_checked,
        "corrupt": pass.corrupt,
    });
    report(json, value, &text);
}

/// Prints a result as JSON (one object per line) or as text.
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

fn report(json: bool, value: serde_json::Value, text: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn init_logging(config: &ValidConfig) {
    let filter = tracing_subscriber::EnvFilter::new(&config.raw().log.level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests running several daemons in one process) keeps the first; fine.
    let _ = match config.raw().log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the node until SIGTERM or Ctrl-C, then stops it in order.
async fn daemon(config: ValidConfig) -> anyhow::Result<()> {
    let node = Node::spawn(config).await?;
    // Under systemd (Type=notify) this is when the unit becomes active; elsewhere a no-op.
    tell_systemd(&[sd_notify::NotifyState::Ready]);
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupt: stopping");
                break;
            }
            // SIGHUP: token files replaced by hand take effect (a bad file keeps the old ones).
            _ = hangup.recv() => {
                if let Err(e) = node.reload_tokens() {
                    tracing::error!(error = %e, "SIGHUP: tokens not reloaded; the old ones stay");
                }
            }
        }
    }
    tell_systemd(&[sd_notify::NotifyState::Stopping]);
    node.shutdown();
    node.join().await?;
    Ok(())
}

fn tell_systemd(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Sends a file's bytes as upload messages, the options riding on the first one.
struct Upload {
    tx: tokio::sync::mpsc::Sender<admin::AddFileRequest>,
    options: Option<admin::AddOptions>,
}

impl Upload {
    /// False when the call has ended (the daemon answered or the connection dropped).
    fn send(&mut self, data: Vec<u8>) -> bool {
        if data.is_empty() && self.options.is_none() {
            return true;
        }
        let msg = admin::AddFileRequest {
            options: self.options.take(),
            data: data.into(),
        };
        self.tx.blocking_send(msg).is_ok()
    }
}

/// Reads `path` (encrypting it when asked) into `upload`; returns the key when it encrypted.
fn read_for_upload(
    path: &std::path::Path,
    mut upload: Upload,
    encrypt: bool,
) -> anyhow::Result<Option<[u8; 32]>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata()?.len();
    let bar = progress::bar(&path.display().to_string(), Some(size), false);
    let mut encryptor = match encrypt {
        true => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (encryptor, header) = Encryptor::new(&name, size)?;
            if !upload.send(header) {
                return Ok(None);
            }
            Some(encryptor)
        }
        false => None,
    };
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        let data = match encryptor.as_mut() {
            Some(e) => e.push(&buf[..n])?,
            None => buf[..n].to_vec(),
        };
        if !upload.send(data) {
            return Ok(None);
        }
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let key = match encryptor {
        Some(e) => {
            let key = e.key();
            upload.send(e.finish()?);
            Some(key)
        }
        None => None,
    };
    // An empty, unencrypted file still sends its options.
    upload.send(Vec::new());
    Ok(key)
}

/// Adds one file; with `encrypt`, the bytes are encrypted here and the capability returned.
async fn add_file(
    client: &mut client::Client,
    path: &std::path::Path,
    options: admin::AddOptions,
    encrypt: bool,
) -> anyhow::Result<(admin::AddFileResponse, Option<Capability>)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<admin::AddFileRequest>(4);
    let upload = Upload {
        tx,
        options: Some(options),
    };
    let source = path.to_owned();
    let mut reader = tokio::task::spawn_blocking(move || read_for_upload(&source, upload, encrypt));
    let rpc = client.add_file(tokio_stream::wrappers::ReceiverStream::new(rx));
    tokio::pin!(rpc);
    let mut key = None;
    let mut read_all = false;
    let answer = loop {
        tokio::select! {
            answer = &mut rpc => break answer,
            read = &mut reader, if !read_all => {
                // A read error must not look like the end of the file: returning drops the call,
                // which resets the stream, and the daemon pins nothing.
                key = read.context("file reader failed")??;
                read_all = true;
            }
        }
    };
    let added = match answer {
        Ok(added) => added.into_inner(),
        Err(status) => {
            reader.abort();
            return Err(status.into());
        }
    };
    if !read_all {
        // The daemon answered as the last message left: the reader is finishing.
        key = reader.await.context("file reader failed")??;
    }
    let capability = match key {
        Some(key) => Some(Capability::new(
            added.cid.parse().context("the daemon sent a bad CID")?,
            key,
        )),
        None => None,
    };
    Ok((added, capability))
}

/// Writes a file's bytes (decrypted, when given a capability) to `output` or stdout.
async fn cat(
    client: &mut client::Client,
    target: String,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let capability = target.parse::<Capability>().ok();
    let cid = match &capability {
        Some(cap) => cap.root.to_string(),
        None => target,
    };
    let cid_label = cid.clone();
    let mut stream = client.cat(admin::CatRequest { cid }).await?.into_inner();
    let mut decryptor = capability.as_ref().map(Decryptor::new);
    let bar = progress::bar(&cid_label, None, output.is_none());
    // Ciphertext is authenticated segment by segment: only checked plaintext is written, and a
    // bad or short ciphertext ends in an error.
    let mut copy =
        async |out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send)| -> anyhow::Result<()> {
            while let Some(piece) = stream.message().await? {
                match decryptor.as_mut() {
                    Some(d) => out.write_all(&d.push(&piece.data)?).await?,
                    None => out.write_all(&piece.data).await?,
                }
                bar.inc(piece.data.len() as u64);
            }
            if let Some(d) = decryptor.as_mut() {
                out.write_all(&d.finish()?).await?;
            }
            Ok(())
        };
    match output {
        Some(path) => {
            write_atomically(&path, async |out| copy(out).await).await?;
            bar.finish_and_clear();
        }
        None => {
            let mut out = tokio::io::stdout();
            copy(&mut out).await?;
            out.flush().await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A refusal from the daemon reads best as its own message.
            match e.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {} ({:?})", status.message(), status.code()),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
