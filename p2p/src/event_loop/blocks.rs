//! `/cairn/block/1` on the swarm task: outbound block requests wait for their answer here;
//! inbound ones are rate-limited (requests, then bytes: the peer's byte budget is taken before the
//! node reads anything), checked and handed to the node as [`NetworkEvent::BlockRequest`], and
//! the node's answer is cut to the allowance and the response size before it leaves.

use std::time::Duration;

use bytes::Bytes;
use cairn_proto::wire::{BlockRequest, BlockResponse, WireBlock};
use cid::Cid;
use libp2p::request_response::{self, ResponseChannel};
use libp2p_identity::PeerId;

use super::{EventLoop, Replier, fail_outbound, millis};
use crate::behaviour::{
    MAX_BLOCK_RESPONSE_BYTES, MAX_BLOCK_RESPONSE_PAYLOAD, MAX_CIDS_PER_REQUEST,
};
use crate::client::{BlockReply, InboundId, NetworkEvent};
use crate::error::Error;
use crate::scores::Offence;

/// The largest block any node stores: a response allowance never goes below one whole block.
const MAX_BLOCK_SIZE: usize = cairn_config::MAX_BLOCK_SIZE_LIMIT as usize;
/// Room for a block's CID and framing in a response, beyond its data.
const BLOCK_OVERHEAD: usize = 128;
/// The wait a refused request asks for when the node's queue of requests is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(50);

impl EventLoop {
    pub(super) fn request_blocks(
        &mut self,
        peer: PeerId,
        cids: Vec<Cid>,
        reply: Replier<BlockReply>,
    ) {
        let Some(reply) = self
            .pending_requests
            .refuse_when_full(reply, || Error::Request {
                peer,
                reason: "too many requests in flight".into(),
            })
        else {
            return;
        };
        let request = BlockRequest {
            cids: cids.iter().map(|c| Bytes::from(c.to_bytes())).collect(),
        };
        let id = self
            .swarm
            .behaviour_mut()
            .blocks
            .send_request(&peer, request);
        self.pending_requests.insert(id, reply);
    }

    pub(super) fn respond_blocks(
        &mut self,
        id: InboundId,
        blocks: Vec<(Cid, Bytes)>,
        missing: Vec<Cid>,
    ) {
        let Some((allowance, channel)) = self.inbound.remove(&id) else {
            return; // the peer gave up (timeout, disconnect) before we answered
        };
        // The node reads within the allowance taken from the peer's byte budget at admission;
        // both it and the response size are enforced here regardless.
        let (mut payload, mut size) = (0usize, 0usize);
        let sent = blocks
            .iter()
            .take_while(|(_, data)| {
                payload += data.len();
                size += data.len() + BLOCK_OVERHEAD;
                payload <= allowance && size <= MAX_BLOCK_RESPONSE_BYTES
            })
            .count();
        let response = BlockResponse {
            blocks: blocks
                .into_iter()
                .take(sent)
                .map(|(cid, data)| WireBlock {
                    cid: cid.to_bytes().into(),
                    data,
                })
                .collect(),
            missing: missing.iter().map(|c| Bytes::from(c.to_bytes())).collect(),
            retry_after_ms: 0,
            error: String::new(),
        };
        self.metrics.blocks_sent.inc_by(sent as u64);
        self.metrics.block_requests_served.inc();
        let _ = self
            .swarm
            .behaviour_mut()
            .blocks
            .send_response(channel, response);
    }

    pub(super) fn on_block_event(
        &mut self,
        event: request_response::Event<BlockRequest, BlockResponse>,
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
            } => self.on_block_request(peer, InboundId(request_id), request, channel),
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(self.read_block_response(peer, response));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => fail_outbound(&mut self.pending_requests, request_id, peer, &error),
            request_response::Event::InboundFailure { request_id, .. } => {
                self.inbound.remove(&InboundId(request_id));
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    pub(super) fn on_block_request(
        &mut self,
        peer: PeerId,
        id: InboundId,
        request: BlockRequest,
        channel: ResponseChannel<BlockResponse>,
    ) {
        if let Err(wait) = self.admit_request(&peer) {
            self.answer_now(channel, slow_down(wait));
            self.penalise(peer, Offence::OverLimit);
            return;
        }
        if request.cids.len() > MAX_CIDS_PER_REQUEST {
            self.answer_now(
                channel,
                refusal(format!(
                    "{} CIDs in one request; at most {MAX_CIDS_PER_REQUEST}",
                    request.cids.len()
                )),
            );
            self.penalise(peer, Offence::Malformed);
            return;
        }
        let cids: Result<Vec<Cid>, _> = request
            .cids
            .iter()
            .map(|bytes| Cid::try_from(bytes.as_ref()))
            .collect();
        let cids = match cids {
            Ok(cids) => cids,
            Err(e) => {
                self.answer_now(channel, refusal(format!("malformed CID: {e}")));
                self.penalise(peer, Offence::Malformed);
                return;
            }
        };
        if self.inbound.is_full() {
            self.metrics.limited("queue");
            self.answer_now(channel, slow_down(QUEUE_FULL_WAIT));
            return;
        }
        // The peer's byte budget is taken before anything is read: a request cannot make the node
        // read more than the peer may receive.
        let wanted = cids
            .len()
            .saturating_mul(MAX_BLOCK_SIZE)
            .min(MAX_BLOCK_RESPONSE_PAYLOAD);
        let allowance = match self.admit_bytes(&peer, wanted, MAX_BLOCK_SIZE) {
            Ok(allowance) => allowance,
            Err(wait) => {
                self.answer_now(channel, slow_down(wait));
                return;
            }
        };
        match self.events.try_send(NetworkEvent::BlockRequest {
            id,
            peer,
            cids,
            allowance,
        }) {
            Ok(()) => {
                self.inbound.insert(id, (allowance, channel));
            }
            Err(_) => {
                // The node is behind (or stopping): answer now rather than let the peer hang.
                self.metrics.limited("queue");
                self.answer_now(channel, slow_down(QUEUE_FULL_WAIT));
            }
        }
    }

    pub(super) fn answer_now(
        &mut self,
        channel: ResponseChannel<BlockResponse>,
        response: BlockResponse,
    ) {
        let _ = self
            .swarm
            .behaviour_mut()
            .blocks
            .send_response(channel, response);
    }

    pub(super) fn read_block_response(
        &mut self,
        peer: PeerId,
        response: BlockResponse,
    ) -> Result<BlockReply, Error> {
        if !response.error.is_empty() {
            return Err(Error::Request {
                peer,
                reason: format!(
                    "refused: {}",
                    response.error.chars().take(200).collect::<String>()
                ),
            });
        }
        let mut reply = BlockReply {
            retry_after: (response.retry_after_ms > 0)
                .then(|| Duration::from_millis(response.retry_after_ms.min(60_000))),
            ..Default::default()
        };
        let mut malformed = false;
        for block in response.blocks {
            match Cid::try_from(block.cid.as_ref()) {
                Ok(cid) => reply.blocks.push((cid, block.data)),
                Err(_) => malformed = true,
            }
        }
        for cid in response.missing {
            match Cid::try_from(cid.as_ref()) {
                Ok(cid) => reply.missing.push(cid),
                Err(_) => malformed = true,
            }
        }
        if malformed {
            self.penalise(peer, Offence::Malformed);
        }
        Ok(reply)
    }
}

pub(super) fn slow_down(wait: Duration) -> BlockResponse {
    BlockResponse {
        retry_after_ms: millis(wait),
        ..Default::default()
    }
}

pub(super) fn refusal(error: String) -> BlockResponse {
    BlockResponse {
        error,
        ..Default::default()
    }
}
