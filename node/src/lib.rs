//! cairn-node: the Cairn daemon's library — the content model (UnixFS files and CAR archives over
//! the verified blockstore) now; the daemon, replication and the admin API as they land.

pub mod car;
mod error;
pub mod init;
pub mod secrets;
pub mod unixfs;

pub use error::{Error, Result};
