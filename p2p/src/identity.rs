//! The node's identity: an ed25519 key pair whose public half is the peer ID other nodes pin in
//! their bootstrap lists and allowlists. Stored in libp2p's protobuf key encoding (what Kubo and
//! rust-libp2p use), so keys can move between tools.

use libp2p_identity::{Keypair, PeerId};

use crate::Error;

/// The node's key pair.
#[derive(Clone)]
pub struct NodeIdentity {
    keypair: Keypair,
}

impl std::fmt::Debug for NodeIdentity {
    // Never print the secret half.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// A fresh ed25519 identity from the operating system's randomness.
    pub fn generate() -> Self {
        Self {
            keypair: Keypair::generate_ed25519(),
        }
    }

    /// Reads the protobuf encoding written by [`NodeIdentity::to_bytes`]. Only ed25519 keys are
    /// accepted: one key type keeps the allowlist's meaning simple.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let keypair = Keypair::from_protobuf_encoding(bytes)
            .map_err(|e| Error::BadIdentity(e.to_string()))?;
        if keypair.clone().try_into_ed25519().is_err() {
            return Err(Error::BadIdentity(format!(
                "{:?} keys are not accepted",
                keypair.key_type()
            )));
        }
        Ok(Self { keypair })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        self.keypair
            .to_protobuf_encoding()
            .map_err(|e| Error::BadIdentity(e.to_string()))
    }

    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_its_encoding() {
        let id = NodeIdentity::generate();
        let back = NodeIdentity::from_bytes(&id.to_bytes().unwrap()).unwrap();
        assert_eq!(back.peer_id(), id.peer_id());
        assert!(id.peer_id().to_string().starts_with("12D3KooW"));
        assert!(!format!("{id:?}").contains("secret"));
    }

    #[test]
    fn garbage_is_not_an_identity() {
        for bytes in [&b""[..], b"\x08\x01\x12\x03abc", b"not a key at all"] {
            assert!(matches!(
                NodeIdentity::from_bytes(bytes),
                Err(Error::BadIdentity(_))
            ));
        }
    }
}
