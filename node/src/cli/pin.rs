//! Pins: `pin add`, `pin rm`, `pin ls`, `pin status`.

use cairn_proto::admin;

use super::args::PinAction;
use super::output::{self, emit};

pub(crate) async fn run(json: bool, action: PinAction) -> anyhow::Result<()> {
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
            let pinned = output::Pinned {
                cid,
                pinned: true,
                replication_factor: pinned.replication_factor,
                holders: pinned.holders,
                under_replicated: pinned.under_replicated,
            };
            emit(json, &pinned)?;
            if let Some(warning) = pinned.warning().filter(|_| !json) {
                eprintln!("{warning}");
            }
        }
        PinAction::Status { cid, api } => {
            let mut client = api.connect().await?;
            let s = client
                .pin_status(admin::PinStatusRequest { cid })
                .await?
                .into_inner();
            let holders = s
                .holders
                .into_iter()
                .map(|h| output::Holder {
                    live: h.state == "live",
                    peer_id: h.peer_id,
                    state: h.state,
                    audited: h.audited,
                    detail: h.detail,
                })
                .collect();
            emit(
                json,
                &output::PinStatus {
                    cid: s.cid,
                    state: s.state,
                    replication_factor: s.replication_factor,
                    live_replicas: s.live_replicas,
                    failure_budget: s.failure_budget,
                    holders,
                    record_version: s.record_version,
                    record_signer: s.record_signer,
                },
            )?;
        }
        PinAction::Rm { cid, api } => {
            let mut client = api.connect().await?;
            client
                .pin_rm(admin::PinRmRequest { cid: cid.clone() })
                .await?;
            emit(json, &output::Unpinned { cid, pinned: false })?;
        }
        PinAction::Ls { api } => {
            let mut client = api.connect().await?;
            let pins: Vec<output::PinEntry> = client
                .pin_ls(admin::PinLsRequest {})
                .await?
                .into_inner()
                .pins
                .into_iter()
                .map(|pin| output::PinEntry {
                    cid: pin.cid,
                    mode: pin.mode,
                })
                .collect();
            output::emit_all(json, &pins)?;
        }
    }
    Ok(())
}
