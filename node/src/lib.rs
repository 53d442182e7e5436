//! cairn-node: the Cairn daemon's library — the content model (UnixFS files and CAR archives over
//! the verified blockstore), the node's life (`Node::spawn`), its gRPC admin API and the client
//! the CLI uses. Replication and the P2P layer land in later issues.

pub mod api;
pub mod car;
pub mod client;
pub mod encrypt;
mod error;
pub mod init;
pub mod metrics;
mod node;
mod scrub_worker;
pub mod secrets;
pub mod unixfs;

pub use error::{Error, Result};
pub use node::{BLOCKS_DIR, Node, NodeHandle};
