//! cairn-node: the Cairn daemon's library — the content model (UnixFS files and CAR archives over
//! the verified blockstore), the node's life (`Node::spawn`), its gRPC admin API and the client
//! the CLI uses, and the node's side of the network (answering peers' block requests, fetching
//! DAGs it lacks) and replication: pin records, receipts, audits and repair.
#![forbid(unsafe_code)]

pub mod api;
pub mod atomic_file;
mod bitswap;
mod block_service;
pub mod car;
pub mod client;
pub mod client_limit;
pub mod cluster_init;
pub mod dag_export;
pub mod encrypt;
mod error;
pub mod fetch;
pub mod gateway;
pub mod init;
mod listen;
pub mod metrics;
mod node;
pub mod pace;
pub mod progress;
pub mod replication;
mod scrub_worker;
pub mod sealed_key;
pub mod secrets;
pub mod store;
pub mod tasks;
pub mod unixfs;

pub use error::{Error, Result};
pub use node::{BLOCKS_DIR, Node, NodeHandle};
