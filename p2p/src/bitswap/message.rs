//! Bitswap's wire format: protobuf messages behind a varint length, and the CID prefix that
//! 1.1.0 and later send beside each block instead of the CID.

use bytes::Bytes;
use cairn_proto::bitswap::Message;
use cid::Cid;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use prost::Message as _;

pub const BITSWAP_1_2_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
pub const BITSWAP_1_1_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.1.0");
pub const BITSWAP_1_0_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.0.0");
/// The versions accepted inbound, newest first.
pub const PROTOCOLS: [StreamProtocol; 3] = [BITSWAP_1_2_0, BITSWAP_1_1_0, BITSWAP_1_0_0];

/// Largest message read or written: a 2 MiB block with room for its framing, as go-bitswap.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("bitswap message of {0} bytes is over the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("bitswap stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("bitswap message does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("bitswap length prefix: {0}")]
    Length(String),
}

/// The next message on `stream`; `None` when the peer closed it between messages.
pub async fn read_message<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<Message>, WireError> {
    let length = match unsigned_varint::aio::read_usize(&mut *stream).await {
        Ok(length) => length,
        Err(unsigned_varint::io::ReadError::Io(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            return Ok(None);
        }
        Err(e) => return Err(WireError::Length(e.to_string())),
    };
    if length > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(length));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok(Some(Message::decode(Bytes::from(body))?))
}

/// Writes `message` with its length in front.
pub async fn write_message<W: AsyncWrite + Unpin>(
    stream: &mut W,
    message: &Message,
) -> Result<(), WireError> {
    let body = message.encode_to_vec();
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(body.len()));
    }
    let mut length = unsigned_varint::encode::usize_buffer();
    stream
        .write_all(unsigned_varint::encode::usize(body.len(), &mut length))
        .await?;
    stream.write_all(&body).await?;
    stream.flush().await?;
    Ok(())
}

/// `cid`'s prefix: version, codec, multihash code and digest length.
pub fn prefix(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    let mut buf = unsigned_varint::encode::u64_buffer();
    for n in [
        cid.version() as u64,
        cid.codec(),
        cid.hash().code(),
        u64::from(cid.hash().size()),
    ] {
        out.extend_from_slice(unsigned_varint::encode::u64(n, &mut buf));
    }
    out
}

#[cfg(test)]
mod tests {
    use cairn_proto::bitswap::message::{Block, Wantlist, wantlist};

    use super::*;

    const V0: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    const V1_RAW: &str = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";

    #[test]
    fn prefixes_are_what_go_cid_writes() {
        // go-cid's Prefix.Bytes(): CIDv0 is version 0, dag-pb (0x70), sha2-256 (0x12), 32.
        let v0: Cid = V0.parse().unwrap();
        assert_eq!(prefix(&v0), [0x00, 0x70, 0x12, 0x20]);
        let v1: Cid = V1_RAW.parse().unwrap();
        assert_eq!(prefix(&v1), [0x01, 0x55, 0x12, 0x20]);
    }

    #[tokio::test]
    async fn messages_round_trip_and_oversize_lengths_are_refused() {
        let message = Message {
            wantlist: Some(Wantlist {
                entries: vec![wantlist::Entry {
                    block: V1_RAW.parse::<Cid>().unwrap().to_bytes().into(),
                    want_type: wantlist::WantType::Have as i32,
                    send_dont_have: true,
                    ..Default::default()
                }],
                full: false,
            }),
            payload: vec![Block {
                prefix: vec![1, 0x55, 0x12, 0x20].into(),
                data: Bytes::from_static(b"hello"),
            }],
            ..Default::default()
        };
        let mut wire = Vec::new();
        write_message(&mut futures::io::Cursor::new(&mut wire), &message)
            .await
            .unwrap();
        let mut reader = futures::io::Cursor::new(wire);
        let read = read_message(&mut reader).await.unwrap();
        assert_eq!(read, Some(message));
        assert!(
            matches!(read_message(&mut reader).await, Ok(None)),
            "clean end"
        );

        let mut oversize = Vec::new();
        let mut buf = unsigned_varint::encode::usize_buffer();
        oversize.extend_from_slice(unsigned_varint::encode::usize(
            MAX_MESSAGE_BYTES + 1,
            &mut buf,
        ));
        let refused = read_message(&mut futures::io::Cursor::new(oversize)).await;
        assert!(matches!(refused, Err(WireError::TooLarge(_))));
    }
}
