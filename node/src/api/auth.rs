//! Who may call what on the admin API, in one place: [`required_role`] is the table of every
//! admin method and the role it needs, and [`Authorize`] is the tower layer that applies it — the
//! bearer token, then the rate limit of its kind (valid-token calls and failed ones have separate
//! buckets per address, see `limit`) — before any handler runs. The admin token
//! may call everything, the read-only token only reads. Tokens are compared in constant time, so
//! response timing does not leak how much of a guess was right. The health and reflection
//! services need no token (probes and `grpcurl` discover the API with them).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::error::{Error, Result};
use crate::secrets::{new_token, read_secret, write_secret};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    ReadOnly,
    Admin,
}

/// The admin service's path prefix: `/cairn.admin.v1.Admin/<Method>`.
pub const ADMIN_SERVICE: &str = "cairn.admin.v1.Admin";

/// The authorisation table: the role each admin method needs. A method missing here (added to
/// the .proto but not to this table) needs the admin token: new calls fail closed.
fn role_of_method(method: &str) -> Role {
    match method {
        "Status" | "Cat" | "PinStatus" | "PinLs" | "BlockGet" | "BlockStat" | "RepoStat"
        | "CarExport" | "PeersLs" => Role::ReadOnly,
        // `repo verify` quarantines what it finds: a change to the node.
        "RepoVerify" => Role::Admin,
        "AddFile" | "PinAdd" | "PinRm" | "PinRestore" | "BlockPut" | "BlockRm" | "RepoScrub"
        | "RepoGc" | "CarImport" | "PeersConnect" | "PeersBan" | "RotateToken" => Role::Admin,
        _ => Role::Admin,
    }
}

/// The role a call to `path` needs, or `None` for the services that need no token (health,
/// reflection).
pub fn required_role(path: &str) -> Option<Role> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    (service == ADMIN_SERVICE).then(|| role_of_method(method))
}

/// The two tokens a node accepts, and the files they come from. They can change while the node
/// runs: [`Tokens::reload`] re-reads the files (SIGHUP), [`Tokens::rotate`] makes a new one.
pub struct Tokens {
    current: RwLock<Pair>,
    admin_file: PathBuf,
    readonly_file: PathBuf,
    limits: AdminLimits,
}

/// The admin API's rate limits: calls with a valid token, and calls that fail authentication.
#[derive(Debug)]
pub struct AdminLimits {
    pub authenticated: crate::client_limit::ClientLimit,
    pub failed: crate::client_limit::ClientLimit,
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
    pub fn load(admin_file: PathBuf, readonly_file: PathBuf, limits: AdminLimits) -> Result<Self> {
        let current = Pair {
            admin: read_token(&admin_file)?,
            readonly: read_token(&readonly_file)?,
        };
        Ok(Self {
            current: RwLock::new(current),
            admin_file,
            readonly_file,
            limits,
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

    /// The role the call's bearer token carries.
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Role, Status> {
        let header = headers
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        self.role_of(presented.trim())
            .ok_or_else(|| Status::unauthenticated("unknown token"))
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

    /// Admits a call: with a bearer token good for `needed`, within `client`'s rate limit for
    /// calls like it (a failed one is charged to the failed-authentication bucket only).
    pub fn authorize(
        &self,
        headers: &http::HeaderMap,
        client: Option<IpAddr>,
        needed: Role,
    ) -> Result<Role, Status> {
        let role = match self.authenticate(headers) {
            Ok(role) => role,
            Err(refusal) => {
                self.limits.failed.check(client)?;
                return Err(refusal);
            }
        };
        self.limits.authenticated.check(client)?;
        if role < needed {
            return Err(Status::permission_denied(
                "the read-only token cannot change the node; use the admin token",
            ));
        }
        Ok(role)
    }
}

/// The tower layer that authorises every admin call by [`required_role`] before it reaches a
/// handler; a refused call gets its gRPC status at once.
#[derive(Clone, Debug)]
pub struct Authorize(pub Arc<Tokens>);

impl<S> tower::Layer<S> for Authorize {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorized {
            inner,
            tokens: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Authorized<S> {
    inner: S,
    tokens: Arc<Tokens>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Authorized<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if let Some(needed) = required_role(request.uri().path()) {
            let client = client_address(&request);
            if let Err(status) = self.tokens.authorize(request.headers(), client, needed) {
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        Box::pin(self.inner.call(request))
    }
}

/// The caller's address, over plain TCP or TLS.
fn client_address<B>(request: &http::Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
        .map(|addr| addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_covers_reads_writes_and_other_services() {
        let path = |m: &str| format!("/{ADMIN_SERVICE}/{m}");
        assert_eq!(required_role(&path("Status")), Some(Role::ReadOnly));
        assert_eq!(required_role(&path("PinRm")), Some(Role::Admin));
        // A method this table does not know needs the admin token.
        assert_eq!(required_role(&path("SomethingNew")), Some(Role::Admin));
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            required_role("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            None
        );
        assert_eq!(required_role("/cairn.admin.v1.AdminX/Status"), None);
    }
}
