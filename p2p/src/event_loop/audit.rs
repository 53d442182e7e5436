//! `/cairn/audit/1` on the swarm task: outbound audits wait for their answer here; inbound ones
//! are rate-limited and checked like every other request, then handed to the node (which reads
//! the block) as [`NetworkEvent::Audit`].

use std::time::Duration;

use bytes::Bytes;
use cairn_proto::wire::{AuditRequest, AuditResponse};
use cid::Cid;
use libp2p::request_response::{self, ResponseChannel};
use libp2p_identity::PeerId;

use super::{EventLoop, Replier, fail_outbound, millis};
use crate::client::{AuditAnswer, AuditId, NetworkEvent};
use crate::error::Error;
use crate::scores::Offence;

/// Longest reason a peer's answer may carry into our logs.
const MAX_REASON_CHARS: usize = 200;
/// The wait a refused audit asks for when the node's queue of requests is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(200);
/// Blocks one audit may ask to prove: a proof round samples a few.
pub const MAX_AUDIT_BLOCKS: usize = 8;
/// Bytes of the asker's byte budget one audited block costs, whether the node holds it or not:
/// an answer reads and hashes up to a whole chunk per block, and naming blocks the node lacks is
/// not free either.
pub const AUDIT_BYTES_PER_BLOCK: usize = 256 * 1024;
/// The longest wait a peer's refusal can impose on us.
const MAX_RETRY_AFTER_MS: u64 = 60_000;

impl EventLoop {
    pub(super) fn send_audit(
        &mut self,
        peer: PeerId,
        root: Cid,
        blocks: Vec<Cid>,
        nonce: Vec<u8>,
        reply: Replier<AuditAnswer>,
    ) {
        let Some(reply) = self
            .pending_audits
            .refuse_when_full(reply, || Error::Request {
                peer,
                reason: "too many audits in flight".into(),
            })
        else {
            return;
        };
        let request = AuditRequest {
            root: root.to_bytes().into(),
            blocks: blocks.iter().map(|c| Bytes::from(c.to_bytes())).collect(),
            nonce: nonce.into(),
        };
        let id = self
            .swarm
            .behaviour_mut()
            .audit
            .send_request(&peer, request);
        self.pending_audits.insert(id, reply);
    }

    pub(super) fn respond_audit(&mut self, id: AuditId, answer: AuditAnswer) {
        if let Some(channel) = self.inbound_audits.remove(&id) {
            let response = AuditResponse {
                holding: answer.holding,
                proof: answer.proof.into(),
                error: answer.error,
                retry_after_ms: 0,
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .audit
                .send_response(channel, response);
        }
    }

    /// A refusal carries the wait, so the auditor asks again later instead of reading the empty
    /// answer as "released" (which would send its copy to be repaired elsewhere).
    fn refuse_audit(
        &mut self,
        channel: ResponseChannel<AuditResponse>,
        error: String,
        retry_after: Duration,
    ) {
        let response = AuditResponse {
            error,
            retry_after_ms: millis(retry_after),
            ..Default::default()
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .audit
            .send_response(channel, response);
    }

    pub(super) fn on_audit_event(
        &mut self,
        event: request_response::Event<AuditRequest, AuditResponse>,
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
            } => self.on_audit_request(peer, AuditId(request_id), request, channel),
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_audits.remove(&request_id) {
                    let _ = reply.send(Ok(AuditAnswer {
                        holding: response.holding,
                        proof: response.proof.to_vec(),
                        error: response.error.chars().take(MAX_REASON_CHARS).collect(),
                        retry_after: (response.retry_after_ms > 0).then(|| {
                            Duration::from_millis(response.retry_after_ms.min(MAX_RETRY_AFTER_MS))
                        }),
                    }));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => fail_outbound(&mut self.pending_audits, request_id, peer, &error),
            request_response::Event::InboundFailure { request_id, .. } => {
                self.inbound_audits.remove(&AuditId(request_id));
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_audit_request(
        &mut self,
        peer: PeerId,
        id: AuditId,
        request: AuditRequest,
        channel: ResponseChannel<AuditResponse>,
    ) {
        if let Err(wait) = self.admit_request(&peer) {
            self.refuse_audit(
                channel,
                format!("slow down; retry in {} ms", millis(wait)),
                wait,
            );
            self.penalise(peer, Offence::OverLimit);
            return;
        }
        let root = Cid::try_from(request.root.as_ref());
        let blocks: Result<Vec<Cid>, _> = request
            .blocks
            .iter()
            .map(|b| Cid::try_from(b.as_ref()))
            .collect();
        let (Ok(root), Ok(blocks)) = (root, blocks) else {
            self.refuse_audit(channel, "malformed CID".into(), Duration::ZERO);
            self.penalise(peer, Offence::Malformed);
            return;
        };
        if blocks.len() > MAX_AUDIT_BLOCKS {
            self.refuse_audit(
                channel,
                format!("more than {MAX_AUDIT_BLOCKS} blocks in one audit"),
                Duration::ZERO,
            );
            self.penalise(peer, Offence::Malformed);
            return;
        }
        // Charged like a block request, before anything is read. Over the budget the asker is
        // told to wait, and not penalised: an honest holder's proof rounds over many pins come in
        // bursts (the soak test's auditors were banned for them).
        let cost = blocks.len() * AUDIT_BYTES_PER_BLOCK;
        if cost > 0
            && let Err(wait) = self.admit_bytes(&peer, cost, cost)
        {
            self.refuse_audit(
                channel,
                format!("slow down; retry in {} ms", millis(wait)),
                wait,
            );
            return;
        }
        let event = NetworkEvent::Audit {
            id,
            peer,
            root,
            blocks,
            nonce: request.nonce.to_vec(),
        };
        if self.inbound_audits.is_full() || self.events.try_send(event).is_err() {
            self.metrics.limited("queue");
            self.refuse_audit(channel, "busy; retry later".into(), QUEUE_FULL_WAIT);
            return;
        }
        self.inbound_audits.insert(id, channel);
    }
}
