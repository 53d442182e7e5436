//! cairn-proto: Cairn's protobuf messages, generated at build time from `proto/`.
//!
//! Only generated code and its thin conversions live here; no logic.

/// UnixFS v1 messages (the Data field of a UnixFS DAG-PB node).
pub mod unixfs {
    #![allow(missing_debug_implementations, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/unixfs.rs"));
}
