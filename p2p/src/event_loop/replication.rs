//! `/cairn/replicate/1` on the swarm task: outbound "hold this root" requests wait for their
//! signed receipt here; inbound ones are rate-limited and checked, then handed to the node (which
//! fetches the DAG and signs) as [`NetworkEvent::Replicate`].

use bytes::Bytes;
use cairn_proto::wire::{ReplicateRequest, ReplicateResponse};
use cid::Cid;
use libp2p::request_response;

use super::{EventLoop, Replier, fail_outbound, millis};
use crate::client::{NetworkEvent, ReplicateId};
use crate::error::Error;
use crate::scores::Offence;

/// Longest reason a peer's refusal may carry into our errors.
const MAX_REASON_CHARS: usize = 200;

/// What the node asks a peer to hold.
pub(super) struct ReplicateAsk {
    pub root: Cid,
    pub replication_factor: u32,
    pub nonce: Vec<u8>,
    pub repair: bool,
    pub record: Vec<u8>,
}

impl EventLoop {
    pub(super) fn send_replicate(
        &mut self,
        peer: libp2p_identity::PeerId,
        ask: ReplicateAsk,
        reply: Replier<Vec<u8>>,
    ) {
        let Some(reply) = self
            .pending_replicates
            .refuse_when_full(reply, || Error::Request {
                peer,
                reason: "too many replications in flight".into(),
            })
        else {
            return;
        };
        let request = ReplicateRequest {
            root: ask.root.to_bytes().into(),
            replication_factor: ask.replication_factor,
            nonce: ask.nonce.into(),
            repair: ask.repair,
            record: ask.record.into(),
        };
        let id = self
            .swarm
            .behaviour_mut()
            .replicate
            .send_request(&peer, request);
        self.pending_replicates.insert(id, reply);
    }

    pub(super) fn respond_replicate(&mut self, id: ReplicateId, outcome: Result<Vec<u8>, String>) {
        let Some(channel) = self.inbound_replicates.remove(&id) else {
            return; // the peer gave up before we answered
        };
        let response = match outcome {
            Ok(receipt) => ReplicateResponse {
                receipt: receipt.into(),
                error: String::new(),
            },
            Err(error) => ReplicateResponse {
                receipt: Bytes::new(),
                error,
            },
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .replicate
            .send_response(channel, response);
    }

    pub(super) fn on_replicate_event(
        &mut self,
        event: request_response::Event<ReplicateRequest, ReplicateResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request_id,
                        request,
                        channel,
                    },
                ..
            } => {
                let refuse = |error: String| ReplicateResponse {
                    receipt: Bytes::new(),
                    error,
                };
                if let Err(wait) = self.admit_request(&peer) {
                    let response = refuse(format!("slow down; retry in {} ms", millis(wait)));
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .replicate
                        .send_response(channel, response);
                    self.penalise(peer, Offence::OverLimit);
                    return;
                }
                let Ok(root) = Cid::try_from(request.root.as_ref()) else {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .replicate
                        .send_response(channel, refuse("malformed root CID".into()));
                    self.penalise(peer, Offence::Malformed);
                    return;
                };
                let id = ReplicateId(request_id);
                let event = NetworkEvent::Replicate {
                    id,
                    peer,
                    root,
                    replication_factor: request.replication_factor,
                    nonce: request.nonce.to_vec(),
                    repair: request.repair,
                    claims: request.record.to_vec(),
                };
                if self.inbound_replicates.is_full() || self.events.try_send(event).is_err() {
                    self.metrics.limited("queue");
                    let response = refuse("busy; retry later".into());
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .replicate
                        .send_response(channel, response);
                    return;
                }
                self.inbound_replicates.insert(id, channel);
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_replicates.remove(&request_id) {
                    let outcome = if response.error.is_empty() {
                        Ok(response.receipt.to_vec())
                    } else {
                        Err(Error::Request {
                            peer,
                            reason: response.error.chars().take(MAX_REASON_CHARS).collect(),
                        })
                    };
                    let _ = reply.send(outcome);
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => fail_outbound(&mut self.pending_replicates, request_id, peer, &error),
            request_response::Event::InboundFailure { request_id, .. } => {
                self.inbound_replicates.remove(&ReplicateId(request_id));
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
