//! Bearer tokens: the admin token may call everything, the read-only token only reads. Tokens are
//! compared in constant time, so response timing does not leak how much of a guess was right.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::error::{Error, Result};
use crate::secrets::{new_token, read_secret, write_secret};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    ReadOnly,
    Admin,
}

/// The two tokens a node accepts, and the files they come from. They can change while the node
/// runs: [`Tokens::reload`] re-reads the files (SIGHUP), [`Tokens::rotate`] makes a new one.
pub struct Tokens {
    current: RwLock<Pair>,
    admin_file: PathBuf,
    readonly_file: PathBuf,
    limit: super::limit::ClientLimit,
}

struct Pair {
    admin: String,
    readonly: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.write_str("Tokens(..)")
    }
}

/// Reads one token file: a secret (refused when others can read it) holding one line.
fn read_token(path: &Path) -> Result<String> {
    let raw = read_secret(path)?;
    let token = String::from_utf8(raw).unwrap_or_default().trim().to_owned();
    if token.is_empty() {
        return Err(Error::Secret {
            path: path.to_owned(),
            problem: "holds no token".into(),
            fix: "write a token into it (`cairn init --force` makes new ones)".into(),
        });
    }
    Ok(token)
}

impl Tokens {
    /// Reads both token files.
    pub fn load(
        admin_file: PathBuf,
        readonly_file: PathBuf,
        limit: super::limit::ClientLimit,
    ) -> Result<Self> {
        let current = Pair {
            admin: read_token(&admin_file)?,
            readonly: read_token(&readonly_file)?,
        };
        Ok(Self {
            current: RwLock::new(current),
            admin_file,
            readonly_file,
            limit,
        })
    }

    fn pair(&self) -> std::sync::RwLockReadGuard<'_, Pair> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-reads both files; on any error the tokens in use stay as they were.
    pub fn reload(&self) -> Result<()> {
        let fresh = Pair {
            admin: read_token(&self.admin_file)?,
            readonly: read_token(&self.readonly_file)?,
        };
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Replaces the token of `role` with a new random one, written to its file (mode 0600)
    /// before it takes effect; the old one is refused from then on. Returns the file.
    pub fn rotate(&self, role: Role) -> Result<PathBuf> {
        let token = new_token()?;
        let file = match role {
            Role::Admin => &self.admin_file,
            Role::ReadOnly => &self.readonly_file,
        };
        write_secret(file, format!("{token}\n").as_bytes(), true)?;
        let mut pair = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match role {
            Role::Admin => pair.admin = token,
            Role::ReadOnly => pair.readonly = token,
        }
        Ok(file.clone())
    }

    fn role_of(&self, presented: &str) -> Option<Role> {
        let pair = self.pair();
        // Both comparisons always run, so timing does not reveal which token matched.
        let admin = presented.as_bytes().ct_eq(pair.admin.as_bytes());
        let readonly = presented.as_bytes().ct_eq(pair.readonly.as_bytes());
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
