//! Files: `add`, `cat` and `get`.

use std::path::PathBuf;

use cairn_node::encrypt::Capability;
use cairn_proto::admin;

use super::args::{ApiArgs, ReplicationArgs};
use super::output::{self, emit};
use super::transfer;

pub(crate) async fn add(
    json: bool,
    paths: Vec<PathBuf>,
    cid_version: u32,
    encrypt: bool,
    replicas: ReplicationArgs,
    api: &ApiArgs,
) -> anyhow::Result<()> {
    let mut client = api.connect().await?;
    let options = admin::AddOptions {
        cid_version: Some(cid_version),
        replication: replicas.replication,
        no_wait: replicas.no_wait,
    };
    for path in paths {
        let (added, capability) = transfer::add_file(&mut client, &path, options, encrypt).await?;
        let added = output::Added {
            cid: added.cid,
            name: path.display().to_string(),
            size: added.size,
            blocks: added.blocks,
            capability: capability.map(|c| c.to_string()),
            replication_factor: added.replication_factor,
            holders: added.holders,
            under_replicated: added.under_replicated,
        };
        emit(json, &added)?;
        if let Some(warning) = added.warning().filter(|_| !json) {
            eprintln!("{warning}");
        }
    }
    Ok(())
}

pub(crate) async fn cat(cid: String, output: Option<PathBuf>, api: &ApiArgs) -> anyhow::Result<()> {
    let mut client = api.connect().await?;
    transfer::cat(&mut client, cid, output).await
}

pub(crate) async fn get(
    json: bool,
    cid: String,
    output: Option<PathBuf>,
    api: &ApiArgs,
) -> anyhow::Result<()> {
    let file = match output {
        Some(path) => path,
        None => PathBuf::from(match cid.parse::<Capability>() {
            Ok(cap) => cap.root.to_string(),
            Err(_) => cid.trim().to_owned(),
        }),
    };
    let mut client = api.connect().await?;
    transfer::cat(&mut client, cid, Some(file.clone())).await?;
    emit(json, &output::Saved { file })
}
