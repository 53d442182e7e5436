//! Every wire message a peer can send, read the way the swarm reads it: the length-prefixed frame
//! through the codec (with the protocol's size limit), then the CIDs inside. The first byte picks
//! the message type. Anything may fail; nothing may panic, hang or allocate past the limit.
#![no_main]

use cairn_p2p::codec::read_frame;
use cairn_proto::wire::{
    AuditRequest, AuditResponse, BlockRequest, BlockResponse, ReplicateRequest, ReplicateResponse,
};
use cid::Cid;
use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fn cids<'a>(raw: impl IntoIterator<Item = &'a prost::bytes::Bytes>) {
    for bytes in raw {
        let _ = Cid::try_from(bytes.as_ref());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((kind, frame)) = data.split_first() else {
        return;
    };
    let mut io = Cursor::new(frame);
    block_on(async {
        match kind % 6 {
            0 => {
                if let Ok(m) = read_frame::<_, BlockRequest>(&mut io, LIMIT).await {
                    cids(&m.cids);
                }
            }
            1 => {
                if let Ok(m) = read_frame::<_, BlockResponse>(&mut io, LIMIT).await {
                    cids(m.blocks.iter().map(|b| &b.cid));
                    cids(&m.missing);
                }
            }
            2 => {
                if let Ok(m) = read_frame::<_, ReplicateRequest>(&mut io, LIMIT).await {
                    cids([&m.root]);
                }
            }
            3 => {
                if let Ok(m) = read_frame::<_, ReplicateResponse>(&mut io, LIMIT).await {
                    let _ = cairn_p2p::records::Receipt::verify(&m.receipt);
                }
            }
            4 => {
                if let Ok(m) = read_frame::<_, AuditRequest>(&mut io, LIMIT).await {
                    cids([&m.root, &m.block]);
                }
            }
            _ => {
                let _ = read_frame::<_, AuditResponse>(&mut io, LIMIT).await;
            }
        }
    });
});
