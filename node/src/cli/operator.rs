//! Operator keys (DESIGN.md §6, "Authority"): an ed25519 key the operator keeps off the nodes,
//! listed by its ID in `replication.operators`. With it the CLI signs unpins and restores of any
//! owner's pin itself; the daemon never holds it, so a stolen node key reaches that node's own
//! pins and nothing more.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cairn_node::secrets::{read_secret, write_secret};
use cairn_p2p::records::{PinIntent, PinRecord};
use cairn_p2p::{NodeIdentity, PeerId};
use cairn_proto::admin;
use cid::Cid;

use super::args::OperatorKeyAction;
use super::output::{self, emit};

pub(crate) fn run(json: bool, action: OperatorKeyAction) -> anyhow::Result<()> {
    let (key, path) = match action {
        OperatorKeyAction::New { file, force } => {
            let key = NodeIdentity::generate();
            write_secret(&file, &key.to_bytes()?, force)?;
            (key, file)
        }
        OperatorKeyAction::Id { file } => (load(&file)?, file),
    };
    emit(
        json,
        &output::OperatorKey {
            key_id: key.peer_id().to_string(),
            path,
        },
    )
}

/// Reads an operator key, with the same permission checks as the node's own secrets.
pub(crate) fn load(path: &Path) -> anyhow::Result<NodeIdentity> {
    let bytes = read_secret(path)?;
    NodeIdentity::from_bytes(&bytes)
        .with_context(|| format!("{} is not an operator key", path.display()))
}

/// The operator key at `path` and the pin's status as the node sees it (its owners' slots and
/// their versions, which the signed records must be newer than).
pub(crate) async fn load_with_status(
    path: &Path,
    client: &mut cairn_node::client::Client,
    cid: &str,
) -> anyhow::Result<(NodeIdentity, admin::PinStatusResponse)> {
    let key = load(path)?;
    let status = client
        .pin_status(admin::PinStatusRequest {
            cid: cid.to_owned(),
        })
        .await?
        .into_inner();
    Ok((key, status))
}

/// `owner`'s record for `cid`, signed by the operator key, newer than `after` (the slot's
/// version as the node reported it).
pub(crate) fn sign(
    key: &NodeIdentity,
    cid: &str,
    owner: &str,
    after: u64,
    intent: PinIntent,
) -> anyhow::Result<bytes::Bytes> {
    let root: Cid = cid
        .parse()
        .with_context(|| format!("{cid:?} is not a CID"))?;
    let owner: PeerId = owner
        .parse()
        .with_context(|| format!("the node named owner {owner:?}, which is not a peer ID"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let version = after.saturating_add(1).max(now);
    Ok(PinRecord::sign(key, root, owner, intent, version)?.into())
}
