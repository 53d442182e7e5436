//! Bearer tokens: the admin token may call everything, the read-only token only reads. Tokens are
//! compared in constant time, so response timing does not leak how much of a guess was right.

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    ReadOnly,
    Admin,
}

/// The two tokens a node accepts.
pub struct Tokens {
    admin: String,
    readonly: String,
    limit: super::limit::ClientLimit,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.write_str("Tokens(..)")
    }
}

impl Tokens {
    pub fn new(admin: String, readonly: String, limit: super::limit::ClientLimit) -> Self {
        Self {
            admin,
            readonly,
            limit,
        }
    }

    fn role_of(&self, presented: &str) -> Option<Role> {
        // Both comparisons always run, so timing does not reveal which token matched.
        let admin = presented.as_bytes().ct_eq(self.admin.as_bytes());
        let readonly = presented.as_bytes().ct_eq(self.readonly.as_bytes());
        if bool::from(admin) {
            Some(Role::Admin)
        } else if bool::from(readonly) {
            Some(Role::ReadOnly)
        } else {
            None
        }
    }

    /// Admits a request: within the client's rate limit, with a bearer token good for `needed`.
    pub fn authorize<T>(&self, request: &Request<T>, needed: Role) -> Result<Role, Status> {
        self.limit.check(request)?;
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        let role = self
            .role_of(presented.trim())
            .ok_or_else(|| Status::unauthenticated("unknown token"))?;
        if role < needed {
            return Err(Status::permission_denied(
                "the read-only token cannot change the node; use the admin token",
            ));
        }
        Ok(role)
    }
}
