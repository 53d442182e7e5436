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
    #[error("{0} is kept by a pin; unpin it first")]
    Pinned(Cid),
    #[error("{0} is not pinned")]
    NotPinned(Cid),
    /// A pin this node's key has no authority over (another owner's), or a signed record the
    /// authority rule refuses.
    #[error("{0}")]
    NotAuthorised(String),
    #[error("{what} is over the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{0} is not in its unpin grace (never unpinned here, or the grace is over)")]
    NotInGrace(Cid),
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("no entry {path:?} below {root}")]
    NoSuchPath { root: Cid, path: String },
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Our own fault (a worker that panicked, a task that died, no randomness): never the
    /// caller's input.
    #[error("internal error while {what}: {reason}")]
    Internal { what: &'static str, reason: String },
    /// The node is stopping: the same call may succeed on another node or after the restart.
    #[error("the node is stopping")]
    Stopping,
    #[error("CAR file: {0}")]
    Car(String),
    #[error("CAR file is incomplete: root {root} is missing block {missing}")]
    CarIncomplete { root: Cid, missing: Cid },
    #[error("{path}: {problem}; fix: {fix}")]
    Secret {
        path: std::path::PathBuf,
        problem: String,
        fix: String,
    },
    #[error("{0} already exists; pass --force to replace it (a new identity changes the peer ID)")]
    Exists(std::path::PathBuf),
    #[error(transparent)]
    Config(#[from] cairn_config::ConfigError),
    #[error(transparent)]
    P2p(#[from] cairn_p2p::Error),
    #[error("{cid} could not be fetched from the network: {reason}")]
    NotOnNetwork { cid: Cid, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
