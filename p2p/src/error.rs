/// Errors of the P2P layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("identity key is not a valid ed25519 libp2p key: {0}")]
    BadIdentity(String),
}
