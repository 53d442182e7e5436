//! The node and its store as a whole: `status`, `repo stat`, `repo verify`, `repo scrub`,
//! `repo gc`.

use cairn_proto::admin;

use super::args::{ApiArgs, RepoAction};
use super::output::{self, emit};

pub(crate) async fn status(json: bool, api: &ApiArgs) -> anyhow::Result<()> {
    let mut client = api.connect().await?;
    let s = client.status(admin::StatusRequest {}).await?.into_inner();
    emit(
        json,
        &output::Status {
            peer_id: s.peer_id,
            version: s.version,
            connected_peers: s.connected_peers,
            listen_addrs: s.listen_addrs,
            blocks: s.blocks,
            bytes: s.bytes,
            pins: s.pins,
            quarantined_blocks: s.quarantined_blocks,
            under_replicated_pins: s.under_replicated_pins,
            min_failure_budget: s.min_failure_budget,
            network: s.network,
        },
    )
}

fn scrubbed(pass: admin::RepoScrubResponse) -> output::Scrubbed {
    output::Scrubbed {
        blocks_checked: pass.blocks_checked,
        bytes_checked: pass.bytes_checked,
        corrupt: pass.corrupt,
    }
}

pub(crate) async fn run(json: bool, action: RepoAction) -> anyhow::Result<()> {
    match action {
        RepoAction::Stat { api } => {
            let mut client = api.connect().await?;
            let s = client
                .repo_stat(admin::RepoStatRequest {})
                .await?
                .into_inner();
            emit(
                json,
                &output::RepoStat {
                    blocks: s.blocks,
                    bytes: s.bytes,
                    quarantined_blocks: s.quarantined_blocks,
                    max_bytes: s.max_bytes,
                },
            )?;
        }
        RepoAction::Verify { api } => {
            let mut client = api.connect().await?;
            let pass = client
                .repo_verify(admin::RepoVerifyRequest {})
                .await?
                .into_inner();
            let pass = scrubbed(pass);
            emit(json, &pass)?;
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
            emit(json, &scrubbed(pass))?;
        }
        RepoAction::Gc { api } => {
            let mut client = api.connect().await?;
            let gc = client.repo_gc(admin::RepoGcRequest {}).await?.into_inner();
            emit(
                json,
                &output::Collected {
                    removed_blocks: gc.removed_blocks,
                    removed_bytes: gc.removed_bytes,
                },
            )?;
        }
    }
    Ok(())
}
