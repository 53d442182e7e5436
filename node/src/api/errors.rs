//! The one place where errors become gRPC status codes (DESIGN.md §7).

use cairn_blockstore::Error as StoreError;
use cairn_p2p::Error as P2pError;
use tonic::Status;

use crate::error::Error;

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::Store(store) => match store {
                StoreError::NotFound(_) | StoreError::Incomplete { .. } => {
                    Status::not_found(message)
                }
                StoreError::UnsupportedHash { .. }
                | StoreError::UnsupportedCodec { .. }
                | StoreError::BlockTooLarge { .. }
                | StoreError::InvalidBlock { .. } => Status::invalid_argument(message),
                StoreError::QuotaExceeded { .. } => Status::resource_exhausted(message),
                // Our own copy is corrupt: it was quarantined and nothing was returned.
                StoreError::HashMismatch { .. } => Status::data_loss(message),
                _ => Status::internal(message),
            },
            Error::Pinned(_) => Status::failed_precondition(message),
            Error::NotOnNetwork { .. } => Status::not_found(message),
            Error::P2p(
                P2pError::Dial { .. }
                | P2pError::Request { .. }
                | P2pError::Unsupported { .. }
                | P2pError::SlowDown { .. }
                | P2pError::Lookup(_)
                | P2pError::BootstrapTimeout { .. }
                | P2pError::Stopped,
            ) => Status::unavailable(message),
            Error::NotPinned(_) | Error::NotInGrace(_) | Error::NoSuchPath { .. } => {
                Status::not_found(message)
            }
            Error::Unsupported(_) => Status::unimplemented(message),
            Error::NotAuthorised(_) => Status::permission_denied(message),
            Error::TooLarge { .. } => Status::resource_exhausted(message),
            Error::Stopping => Status::unavailable(message),
            Error::Internal { .. } => Status::internal(message),
            Error::NotAFile { .. }
            | Error::MalformedDag { .. }
            | Error::Car(_)
            | Error::CarIncomplete { .. }
            | Error::BadRequest(_) => Status::invalid_argument(message),
            _ => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn our_own_failures_are_never_the_callers_bad_input() {
        let code = |e: Error| Status::from(e).code();
        assert_eq!(
            code(Error::BadRequest("not a CID".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            code(Error::Internal {
                what: "reading pins",
                reason: "panicked".into()
            }),
            Code::Internal
        );
        assert_eq!(code(Error::Stopping), Code::Unavailable);
        assert_eq!(code(Error::P2p(P2pError::Stopped)), Code::Unavailable);
        assert_eq!(
            code(Error::Store(StoreError::Internal("a page broke".into()))),
            Code::Internal
        );
    }
}
