//! The pin handlers of the admin service: pin and unpin through the replicator, and the pin
//! set and a pin's health as the API shows them.

use cairn_blockstore::PinMode;
use cairn_blockstore::backend::Backend;
use cairn_p2p::records::PinIntent;
use cairn_proto::admin;
use tonic::{Request, Response, Status};

use super::{AdminService, bytes_list, parse_cid};
use crate::fetch::fetch_dag;
use crate::replication::HolderState;

impl<B: Backend> AdminService<B> {
    pub(super) async fn list_pins(
        &self,
        request: Request<admin::PinLsRequest>,
    ) -> Result<Response<admin::PinLsResponse>, Status> {
        if request.get_ref().unpinned {
            let graced = self
                .store
                .run("listing unpinned roots", |store| Ok(store.graced()?))
                .await?;
            let pins = graced
                .into_iter()
                .map(|(cid, until)| admin::Pin {
                    cid: cid.to_string(),
                    mode: "unpinned".to_owned(),
                    expires_at_ms: until,
                })
                .collect();
            return Ok(Response::new(admin::PinLsResponse { pins }));
        }
        let pins = self
            .store
            .run("listing pins", |store| Ok(store.pins()?))
            .await?;
        let pins = pins
            .into_iter()
            .map(|(cid, mode)| admin::Pin {
                cid: cid.to_string(),
                mode: match mode {
                    PinMode::Recursive => "recursive",
                    PinMode::Direct => "direct",
                }
                .to_owned(),
                expires_at_ms: 0,
            })
            .collect();
        Ok(Response::new(admin::PinLsResponse { pins }))
    }

    pub(super) async fn add_pin(
        &self,
        request: Request<admin::PinAddRequest>,
    ) -> Result<Response<admin::PinAddResponse>, Status> {
        let root = parse_cid(&request.get_ref().cid)?;
        let factor = self.factor(request.get_ref().replication)?;
        let mode = if request.get_ref().direct {
            PinMode::Direct
        } else {
            PinMode::Recursive
        };
        // A recursive pin fetches what is missing first; what the fetch wrote is not read back.
        let fetched = match mode {
            PinMode::Recursive => Some(fetch_dag(&self.store, &self.network, root).await?),
            PinMode::Direct => None,
        };
        self.store
            .run("pinning", move |store| {
                match fetched {
                    Some(report) => store.pin_written(&root, &report.written)?,
                    None => store.pin(&root, mode)?,
                }
                Ok(())
            })
            .await?;
        self.announce(root).await;
        if mode == PinMode::Direct {
            return Ok(Response::new(admin::PinAddResponse::default()));
        }
        let replicated = self
            .replicate(root, factor, request.get_ref().no_wait)
            .await?;
        Ok(Response::new(admin::PinAddResponse {
            replication_factor: replicated.factor,
            holders: replicated.holders.iter().map(ToString::to_string).collect(),
            under_replicated: replicated.under_replicated,
        }))
    }

    pub(super) async fn remove_pin(
        &self,
        request: Request<admin::PinRmRequest>,
    ) -> Result<Response<admin::PinRmResponse>, Status> {
        let request = request.into_inner();
        let root = parse_cid(&request.cid)?;
        let outcome = self
            .replicator
            .unpin(root, bytes_list(request.records))
            .await?;
        Ok(Response::new(admin::PinRmResponse {
            state: outcome.as_str().to_owned(),
        }))
    }

    pub(super) async fn restore_pin(
        &self,
        request: Request<admin::PinRestoreRequest>,
    ) -> Result<Response<admin::PinRestoreResponse>, Status> {
        let request = request.into_inner();
        let root = parse_cid(&request.cid)?;
        let factor = self.replicator.policy().factor;
        let replication_factor = self
            .replicator
            .restore(root, factor, bytes_list(request.records))
            .await?;
        Ok(Response::new(admin::PinRestoreResponse {
            replication_factor,
        }))
    }

    pub(super) async fn pin_health(
        &self,
        request: Request<admin::PinStatusRequest>,
    ) -> Result<Response<admin::PinStatusResponse>, Status> {
        let root = parse_cid(&request.get_ref().cid)?;
        let survey = self.replicator.survey(root, true).await?;
        let health = survey.health();
        let newest = survey.claims.as_ref().and_then(|c| c.newest());
        let owners = survey
            .claims
            .iter()
            .flat_map(|c| c.records())
            .map(|r| {
                let (state, replication_factor) = match r.intent {
                    PinIntent::Pinned { replication_factor } => ("pinned", replication_factor),
                    PinIntent::Unpinned => ("unpinned", 0),
                };
                admin::PinOwner {
                    owner: r.owner.to_string(),
                    state: state.to_owned(),
                    replication_factor,
                    version: r.version,
                    signer: r.signer.to_string(),
                }
            })
            .collect();
        let holders = survey
            .holders
            .iter()
            .map(|h| {
                let (state, detail) = match &h.state {
                    HolderState::Live => ("live", String::new()),
                    HolderState::Unproven => ("unproven", String::new()),
                    HolderState::Unreachable(why) => ("unreachable", why.clone()),
                    HolderState::FailedAudit(why) => ("failed_audit", why.clone()),
                    HolderState::Released => ("released", String::new()),
                };
                admin::HolderStatus {
                    peer_id: h.peer.to_string(),
                    state: state.to_owned(),
                    audited: h.audited,
                    detail,
                }
            })
            .collect();
        Ok(Response::new(admin::PinStatusResponse {
            cid: root.to_string(),
            replication_factor: survey.factor,
            live_replicas: health.live,
            holders,
            failure_budget: health.failure_budget(),
            state: survey.state().to_owned(),
            record_version: newest.map_or(0, |r| r.version),
            record_signer: newest.map(|r| r.signer.to_string()).unwrap_or_default(),
            owners,
        }))
    }
}
