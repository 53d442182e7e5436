//! Pins: `pin add`, `pin rm`, `pin restore`, `pin ls`, `pin status`.

use cairn_proto::admin;

use cairn_p2p::records::PinIntent;

use super::args::PinAction;
use super::operator;
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
                    owners: s
                        .owners
                        .into_iter()
                        .map(|o| output::PinOwner {
                            owner: o.owner,
                            state: o.state,
                            replication_factor: o.replication_factor,
                            version: o.version,
                            signer: o.signer,
                        })
                        .collect(),
                },
            )?;
        }
        PinAction::Rm {
            cid,
            operator_key,
            api,
        } => {
            let mut client = api.connect().await?;
            let records = match operator_key {
                None => Vec::new(),
                Some(path) => {
                    let (key, status) =
                        operator::load_with_status(&path, &mut client, &cid).await?;
                    // Every owner's slot that still pins the root gets a newer unpin.
                    let pinned: Vec<_> = status
                        .owners
                        .iter()
                        .filter(|o| o.state == "pinned")
                        .collect();
                    if pinned.is_empty() {
                        anyhow::bail!("{cid} is not pinned by any owner");
                    }
                    pinned
                        .into_iter()
                        .map(|o| {
                            operator::sign(&key, &cid, &o.owner, o.version, PinIntent::Unpinned)
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?
                }
            };
            let state = client
                .pin_rm(admin::PinRmRequest {
                    cid: cid.clone(),
                    records,
                })
                .await?
                .into_inner()
                .state;
            emit(
                json,
                &output::Unpinned {
                    cid,
                    pinned: state == "pinned",
                },
            )?;
        }
        PinAction::Restore {
            cid,
            operator_key,
            replication,
            api,
        } => {
            let mut client = api.connect().await?;
            let records = match operator_key {
                None => Vec::new(),
                Some(path) => {
                    let (key, status) =
                        operator::load_with_status(&path, &mut client, &cid).await?;
                    // The slot unpinned last is pinned again.
                    let Some(last) = status.owners.iter().max_by_key(|o| o.version) else {
                        anyhow::bail!("{cid} has no pin record to restore");
                    };
                    let factor = replication.unwrap_or(status.replication_factor).max(1);
                    vec![operator::sign(
                        &key,
                        &cid,
                        &last.owner,
                        last.version,
                        PinIntent::Pinned {
                            replication_factor: factor,
                        },
                    )?]
                }
            };
            let restored = client
                .pin_restore(admin::PinRestoreRequest {
                    cid: cid.clone(),
                    records,
                })
                .await?
                .into_inner();
            emit(
                json,
                &output::Restored {
                    cid,
                    pinned: true,
                    replication_factor: restored.replication_factor,
                },
            )?;
        }
        PinAction::Ls { unpinned, api } => {
            let mut client = api.connect().await?;
            let pins: Vec<output::PinEntry> = client
                .pin_ls(admin::PinLsRequest { unpinned })
                .await?
                .into_inner()
                .pins
                .into_iter()
                .map(|pin| output::PinEntry {
                    cid: pin.cid,
                    mode: pin.mode,
                    expires_at_ms: (pin.expires_at_ms > 0).then_some(pin.expires_at_ms),
                })
                .collect();
            output::emit_all(json, &pins)?;
        }
    }
    Ok(())
}
