//! The asking side of Bitswap: want-block messages to a peer that does not speak Cairn's block
//! protocol (a Kubo node), and the blocks that come back on streams of their own, matched to the
//! wants by the CID computed from each block's bytes — so a block arrives here only under the
//! hash of what was actually received.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::bitswap::Message;
use cairn_proto::bitswap::message::{BlockPresenceType, Wantlist, wantlist};
use cid::Cid;
use libp2p::PeerId;
use parking_lot::Mutex;
use sha2::Digest;
use tokio::sync::mpsc;

use super::{BitswapStreams, MAX_WANTS_PER_MESSAGE};
use crate::client::BlockReply;
use crate::error::Error;

type Multihash = cid::multihash::Multihash<64>;

/// SHA2-256, the one hash Bitswap peers use by default, and the one received blocks are matched
/// under; blocks under other hashes are not asked for here.
const SHA2_256: u64 = 0x12;
/// Answers one ask may have waiting before it reads them.
const DELIVERIES: usize = 256;

/// What came back for a want.
#[derive(Debug)]
pub(crate) enum Delivery {
    Block(Cid, Bytes),
    DontHave(Cid),
}

/// Wants in flight, by peer and multihash.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    waiting: Mutex<HashMap<(PeerId, Multihash), mpsc::Sender<Delivery>>>,
}

impl Exchange {
    /// Routes an answer from `peer` to the ask waiting for it; anything unasked is dropped.
    pub(crate) fn deliver(&self, peer: PeerId, message: &Message) -> usize {
        let mut unasked = 0;
        let waiting = self.waiting.lock();
        for block in &message.payload {
            let Some(cid) = cid_of(&block.prefix, &block.data) else {
                unasked += 1;
                continue;
            };
            match waiting.get(&(peer, *cid.hash())) {
                Some(ask) => {
                    let _ = ask.try_send(Delivery::Block(cid, block.data.clone()));
                }
                None => unasked += 1,
            }
        }
        for presence in &message.block_presences {
            let Ok(cid) = Cid::try_from(&presence.cid[..]) else {
                continue;
            };
            if presence.r#type == BlockPresenceType::DontHave as i32
                && let Some(ask) = waiting.get(&(peer, *cid.hash()))
            {
                let _ = ask.try_send(Delivery::DontHave(cid));
            }
        }
        unasked
    }
}

impl BitswapStreams {
    /// Asks `peer` for `cids` over Bitswap and waits up to `deadline` for the answers, in the
    /// shape of Cairn's own block protocol: what came, and what the peer says it lacks. Silence
    /// is an error (a failure the fetch counts against the peer).
    pub async fn ask(
        &self,
        peer: PeerId,
        cids: Vec<Cid>,
        deadline: Duration,
    ) -> Result<BlockReply, Error> {
        let cids: Vec<Cid> = cids
            .into_iter()
            .take(MAX_WANTS_PER_MESSAGE)
            .filter(|c| c.hash().code() == SHA2_256)
            .collect();
        let (tx, mut rx) = mpsc::channel(DELIVERIES);
        {
            let mut waiting = self.1.waiting.lock();
            for cid in &cids {
                waiting.insert((peer, *cid.hash()), tx.clone());
            }
        }
        drop(tx);
        let asked = self.send_wants(peer, &cids).await;
        let mut reply = BlockReply {
            blocks: Vec::new(),
            missing: Vec::new(),
            retry_after: None,
        };
        if asked.is_ok() {
            let mut left = cids.len();
            let until = tokio::time::Instant::now() + deadline;
            while left > 0 {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(Delivery::Block(cid, data))) => reply.blocks.push((cid, data)),
                    Ok(Some(Delivery::DontHave(cid))) => reply.missing.push(cid),
                    Ok(None) | Err(_) => break,
                }
                left -= 1;
            }
        }
        let mut waiting = self.1.waiting.lock();
        for cid in &cids {
            waiting.remove(&(peer, *cid.hash()));
        }
        drop(waiting);
        asked?;
        if reply.blocks.is_empty() && reply.missing.is_empty() && !cids.is_empty() {
            // Silence is not "I lack it": the fetch counts a failure and asks again.
            return Err(Error::Request {
                peer,
                reason: format!("no Bitswap answer within {} s", deadline.as_secs()),
            });
        }
        // What neither came nor was declined is left out of the reply, as Cairn's own protocol
        // leaves out what did not fit: the fetch asks for it again.
        Ok(reply)
    }

    async fn send_wants(&self, peer: PeerId, cids: &[Cid]) -> Result<(), Error> {
        let message = Message {
            wantlist: Some(Wantlist {
                entries: cids
                    .iter()
                    .map(|cid| wantlist::Entry {
                        block: cid.to_bytes().into(),
                        want_type: wantlist::WantType::Block as i32,
                        send_dont_have: true,
                        priority: 1,
                        cancel: false,
                    })
                    .collect(),
                full: false,
            }),
            ..Default::default()
        };
        let failed = |e: super::WireError| Error::Request {
            peer,
            reason: format!("bitswap: {e}"),
        };
        let mut stream = self.open(peer).await.map_err(failed)?;
        stream.send(&message).await.map_err(failed)?;
        // Closed, not dropped: a dropped stream is reset, and go-yamux then discards what it
        // had not read yet.
        stream.close().await.map_err(failed)
    }
}

/// The CID of `data` under `prefix` (version, codec, hash code, digest length), hashing the data:
/// `None` for a malformed prefix or a hash other than SHA2-256.
fn cid_of(prefix: &[u8], data: &[u8]) -> Option<Cid> {
    let mut fields = [0u64; 4];
    let mut rest = prefix;
    for field in &mut fields {
        let (value, tail) = unsigned_varint::decode::u64(rest).ok()?;
        *field = value;
        rest = tail;
    }
    let [version, codec, code, length] = fields;
    if code != SHA2_256 || length != 32 {
        return None;
    }
    let hash = Multihash::wrap(code, &sha2::Sha256::digest(data)).ok()?;
    match version {
        0 => Cid::new_v0(hash).ok(),
        1 => Some(Cid::new_v1(codec, hash)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_named_by_its_own_hash_not_by_the_senders_word() {
        let data = b"hello";
        let v1 = Cid::new_v1(
            0x55,
            Multihash::wrap(SHA2_256, &sha2::Sha256::digest(data)).unwrap(),
        );
        assert_eq!(cid_of(&super::super::prefix(&v1), data), Some(v1));
        // Other bytes under the same prefix get another CID, so no want matches them.
        assert_ne!(cid_of(&super::super::prefix(&v1), b"jello"), Some(v1));
        assert_eq!(
            cid_of(&[1, 0x55, 0x1e, 0x20], data),
            None,
            "blake3: not matched"
        );
        assert_eq!(cid_of(&[1, 0x55], data), None, "truncated prefix");
    }
}
