use cid::Cid;

/// Errors of the node library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] cairn_blockstore::Error),
    #[error("{cid} is not a UnixFS file: {reason}")]
    NotAFile { cid: Cid, reason: String },
    #[error("UnixFS DAG under {root} is malformed: {reason}")]
    MalformedDag { root: Cid, reason: String },
    #[error("CAR file: {0}")]
    Car(String),
    #[error("CAR file is incomplete: root {root} is missing block {missing}")]
    CarIncomplete { root: Cid, missing: Cid },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
