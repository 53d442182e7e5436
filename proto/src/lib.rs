//! cairn-proto: Cairn's protobuf messages, generated at build time from `proto/`.
//!
//! Only generated code and its thin conversions live here; no logic.
#![forbid(unsafe_code)]

/// UnixFS v1 messages (the Data field of a UnixFS DAG-PB node).
pub mod unixfs {
    #![allow(missing_debug_implementations, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/unixfs.rs"));
}

/// The admin gRPC API (client and server).
pub mod admin {
    #![allow(missing_debug_implementations, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/cairn.admin.v1.rs"));
}

/// Messages between nodes over libp2p (the block, replicate and audit protocols).
pub mod wire {
    #![allow(missing_debug_implementations, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/cairn.wire.v1.rs"));
}

/// Bitswap's message, to exchange blocks with IPFS nodes (Kubo and others).
pub mod bitswap {
    #![allow(missing_debug_implementations, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/bitswap.message.pb.rs"));
}

/// Encoded descriptors of every message and service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cairn_descriptor.bin"));
