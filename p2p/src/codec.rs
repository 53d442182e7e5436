//! Framing for Cairn's request-response protocols: an unsigned-varint length, then one prost
//! message. The length is checked against a per-direction bound before a byte of the body is
//! read, so a peer cannot make the node allocate more than the bound; a body that does not decode
//! is an I/O error that closes the stream, never a panic.

use std::io;
use std::marker::PhantomData;

use bytes::Bytes;
use cairn_proto::wire::{
    AuditRequest, AuditResponse, BlockRequest, BlockResponse, ReplicateRequest, ReplicateResponse,
    WireBlock,
};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use prost::encoding::{WireType, encode_key, encode_varint};

/// A message as it goes onto the wire: its protobuf encoding, as pieces written in order.
pub trait WireMessage: prost::Message + Default + Send + 'static {
    /// The pieces; together, exactly the bytes of `encode_to_vec`. By default, that one buffer.
    fn pieces(&self) -> Vec<Bytes> {
        vec![Bytes::from(self.encode_to_vec())]
    }
}

impl WireMessage for BlockRequest {}
impl WireMessage for ReplicateRequest {}
impl WireMessage for ReplicateResponse {}
impl WireMessage for AuditRequest {}
impl WireMessage for AuditResponse {}

/// A reply of up to 8 MiB of blocks is written block by block, each block's bytes from the
/// buffer they were read into: encoding it whole would copy every block into a fresh buffer
/// first.
impl WireMessage for BlockResponse {
    fn pieces(&self) -> Vec<Bytes> {
        let mut pieces = Vec::with_capacity(2 * self.blocks.len() + 1);
        for block in &self.blocks {
            // Field 1 (blocks), its length, then the block's fields in prost's order: the CID,
            // then the data's key and length (an empty field is not encoded), then the data.
            let mut head = Vec::with_capacity(block.cid.len() + 24);
            encode_key(1, WireType::LengthDelimited, &mut head);
            encode_varint(prost::Message::encoded_len(block) as u64, &mut head);
            let cid_only = WireBlock {
                cid: block.cid.clone(),
                data: Bytes::new(),
            };
            head.extend_from_slice(&prost::Message::encode_to_vec(&cid_only));
            if !block.data.is_empty() {
                encode_key(2, WireType::LengthDelimited, &mut head);
                encode_varint(block.data.len() as u64, &mut head);
            }
            pieces.push(Bytes::from(head));
            pieces.push(block.data.clone());
        }
        let rest = BlockResponse {
            blocks: Vec::new(),
            missing: self.missing.clone(),
            retry_after_ms: self.retry_after_ms,
            error: self.error.clone(),
        };
        pieces.push(Bytes::from(prost::Message::encode_to_vec(&rest)));
        pieces
    }
}

/// Size bounds of one protocol's messages.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
}

/// A request-response codec for prost messages `Req` and `Resp`.
#[derive(Debug)]
pub struct ProstCodec<Req, Resp> {
    limits: FrameLimits,
    _messages: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> ProstCodec<Req, Resp> {
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            limits,
            _messages: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for ProstCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::new(self.limits)
    }
}

/// Reads one length-prefixed message of at most `max` bytes.
pub async fn read_frame<T, M>(io: &mut T, max: usize) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: prost::Message + Default,
{
    let len = unsigned_varint::aio::read_usize(&mut *io)
        .await
        .map_err(|e| match e {
            unsigned_varint::io::ReadError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        })?;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes is over the limit of {max}"),
        ));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    // Decoded from `Bytes`, a message's byte fields are slices of the body, not copies of it.
    M::decode(bytes::Bytes::from(body)).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes one length-prefixed message, refusing to send more than `max` bytes (the peer would
/// refuse it anyway).
pub async fn write_frame<T, M>(io: &mut T, message: &M, max: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
    M: WireMessage,
{
    let body_len = message.encoded_len();
    if body_len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {body_len} bytes is over the limit of {max}"),
        ));
    }
    let pieces = message.pieces();
    let written: usize = pieces.iter().map(Bytes::len).sum();
    if written != body_len {
        // A piecewise encoder out of step with prost: never send a frame its length belies.
        return Err(io::Error::other(format!(
            "a message of {body_len} bytes came out as {written}"
        )));
    }
    let mut len = unsigned_varint::encode::usize_buffer();
    io.write_all(unsigned_varint::encode::usize(body_len, &mut len))
        .await?;
    for piece in &pieces {
        io.write_all(piece).await?;
    }
    io.close().await
}

impl<Req, Resp> request_response::Codec for ProstCodec<Req, Resp>
where
    Req: WireMessage,
    Resp: WireMessage,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.limits.max_request_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.limits.max_response_bytes).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.limits.max_request_bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &resp, self.limits.max_response_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;

    use super::*;

    fn framed(message: &impl prost::Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut len = unsigned_varint::encode::usize_buffer();
        let mut out = unsigned_varint::encode::usize(body.len(), &mut len).to_vec();
        out.extend_from_slice(&body);
        out
    }

    #[tokio::test]
    async fn a_message_round_trips() {
        let sent = BlockResponse {
            blocks: vec![WireBlock {
                cid: vec![1, 2].into(),
                data: vec![3; 1000].into(),
            }],
            missing: vec![vec![9].into()],
            retry_after_ms: 5,
            error: String::new(),
        };
        let mut io = Cursor::new(Vec::new());
        write_frame(&mut io, &sent, 4096).await.unwrap();
        let mut io = Cursor::new(io.into_inner());
        let got: BlockResponse = read_frame(&mut io, 4096).await.unwrap();
        assert_eq!(got, sent);
    }

    #[test]
    fn a_block_response_in_pieces_is_exactly_its_encoding() {
        let block = |cid: &[u8], len: usize| WireBlock {
            cid: cid.to_vec().into(),
            data: (0..len).map(|i| i as u8).collect::<Vec<u8>>().into(),
        };
        let cases = [
            BlockResponse::default(),
            BlockResponse {
                blocks: vec![block(&[1, 2, 3], 300_000), block(&[4], 0), block(&[], 5)],
                missing: vec![vec![9; 36].into(), Bytes::new()],
                retry_after_ms: 250,
                error: "over the rate".into(),
            },
            BlockResponse {
                blocks: vec![block(&[7; 36], 262_144); 16],
                ..Default::default()
            },
        ];
        for response in cases {
            let joined: Vec<u8> = response.pieces().concat();
            assert_eq!(joined, prost::Message::encode_to_vec(&response));
            let back: BlockResponse = prost::Message::decode(joined.as_slice()).unwrap();
            assert_eq!(back, response);
        }
    }

    #[tokio::test]
    async fn an_oversize_length_is_refused_before_reading_the_body() {
        let request = BlockRequest {
            cids: vec![vec![7; 600].into()],
        };
        let mut io = Cursor::new(framed(&request));
        let err = read_frame::<_, BlockRequest>(&mut io, 512)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("over the limit of 512"), "{err}");
        // Only the length prefix was consumed.
        assert!(io.position() <= 10, "read {} bytes", io.position());
    }

    #[tokio::test]
    async fn garbage_bodies_and_truncated_frames_are_errors_not_panics() {
        // A length that promises more bytes than arrive.
        let mut io = Cursor::new(vec![100u8, 1, 2, 3]);
        assert!(read_frame::<_, BlockRequest>(&mut io, 4096).await.is_err());
        // A body that is not a protobuf message (field 0 is invalid).
        let mut io = Cursor::new(vec![3u8, 0, 0, 0]);
        let err = read_frame::<_, BlockRequest>(&mut io, 4096)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A varint that never ends.
        let mut io = Cursor::new(vec![0xff; 20]);
        assert!(read_frame::<_, BlockRequest>(&mut io, 4096).await.is_err());
        // Nothing at all.
        let mut io = Cursor::new(Vec::new());
        assert!(read_frame::<_, BlockRequest>(&mut io, 4096).await.is_err());
    }

    #[tokio::test]
    async fn an_oversize_message_is_not_sent() {
        let big = BlockResponse {
            blocks: vec![WireBlock {
                cid: vec![1].into(),
                data: vec![0; 5000].into(),
            }],
            ..Default::default()
        };
        let mut io = Cursor::new(Vec::new());
        assert!(write_frame(&mut io, &big, 4096).await.is_err());
        assert!(io.into_inner().is_empty());
    }
}
