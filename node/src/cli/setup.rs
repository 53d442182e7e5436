//! Commands that need no daemon, or only its health: `init`, `init-cluster`, `encrypt-key`, `id`,
//! `config`, and `rotate-token` and `health` against a running one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_node::client;
use cairn_node::cluster_init::{ClusterLayout, SWARM_KEY_FILE, init_cluster as make_cluster};
use cairn_node::init::{CONFIG_FILE, init as make_node, load_config, load_identity};
use cairn_proto::admin;

use super::args::{ApiArgs, ConfigAction};
use super::output::{self, emit};

pub(crate) fn init(
    json: bool,
    data_dir: Option<PathBuf>,
    force: bool,
    if_missing: bool,
) -> anyhow::Result<()> {
    let dir = match data_dir {
        Some(d) => d,
        None => load_config(None, None)?.data_dir().to_owned(),
    };
    if if_missing && dir.join(CONFIG_FILE).exists() {
        return Ok(());
    }
    let done = make_node(&dir, force)?;
    emit(
        json,
        &output::Initialised {
            peer_id: done.peer_id.to_string(),
            data_dir: done.data_dir.clone(),
            config: done.config_file.clone(),
        },
    )?;
    if !json {
        eprintln!(
            "initialised {} (config: {})",
            done.data_dir.display(),
            done.config_file.display()
        );
    }
    Ok(())
}

pub(crate) fn init_cluster(
    json: bool,
    layout: ClusterLayout,
    out: &Path,
    if_missing: bool,
) -> anyhow::Result<()> {
    if if_missing && out.join(SWARM_KEY_FILE).exists() {
        return Ok(());
    }
    let nodes = make_cluster(out, &layout)?;
    let members: Vec<output::ClusterMember> = layout
        .hosts
        .iter()
        .zip(&nodes)
        .map(|(host, node)| output::ClusterMember {
            host: host.clone(),
            peer_id: node.peer_id.to_string(),
            data_dir: node.data_dir.clone(),
        })
        .collect();
    output::emit_all(json, &members)
}

pub(crate) fn encrypt_key(
    json: bool,
    passphrase_file: &Path,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = load_config(data_dir.as_deref(), config.as_deref())?;
    let path = cairn_node::init::encrypt_identity(&config, passphrase_file)?;
    emit(json, &output::KeyEncrypted { encrypted: path })
}

pub(crate) fn id(
    json: bool,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = load_config(data_dir.as_deref(), config.as_deref())?;
    let identity = load_identity(&config)?;
    emit(
        json,
        &output::Identity {
            peer_id: identity.peer_id().to_string(),
            addrs: config.listen.iter().map(ToString::to_string).collect(),
        },
    )
}

pub(crate) async fn rotate_token(json: bool, readonly: bool, api: &ApiArgs) -> anyhow::Result<()> {
    let mut client = api.connect().await?;
    let rotated = client
        .rotate_token(admin::RotateTokenRequest { readonly })
        .await?
        .into_inner();
    emit(
        json,
        &output::TokenRotated {
            token_file: rotated.token_file,
        },
    )
}

pub(crate) async fn health(json: bool, api: &ApiArgs) -> anyhow::Result<()> {
    let (_, url, ca) = api.endpoint()?;
    anyhow::ensure!(
        client::serving(&url, ca.as_deref()).await?,
        "{url} is not serving"
    );
    emit(json, &output::Health { serving: true })
}

pub(crate) fn config(json: bool, action: ConfigAction) -> anyhow::Result<()> {
    match action {
        ConfigAction::Validate { file } => {
            let config = cairn_config::Config::load(file.as_deref())?;
            config.validate()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&output::ConfigValid { valid: true })?
                );
            } else {
                eprintln!("config is valid");
            }
        }
        ConfigAction::Show { file } => {
            let config = cairn_config::Config::load(file.as_deref())?;
            if json {
                let out = serde_json::to_string(&config).context("rendering the config")?;
                println!("{out}");
            } else {
                print!("{}", config.to_toml().context("rendering the config")?);
            }
        }
    }
    Ok(())
}
