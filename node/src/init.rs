//! `cairn init`: a new node's data directory — config, identity key and admin tokens — and the
//! lookups that find them again (`cairn id`, and later the daemon).

use std::path::{Path, PathBuf};

use cairn_config::{Config, EXAMPLE_CONFIG, ValidConfig};
use cairn_p2p::{NodeIdentity, PeerId};

use crate::error::{Error, Result};
use crate::sealed_key;
use crate::secrets::{new_token, read_secret, write_secret};

/// The config file `cairn init` writes into the data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The node's identity key, in the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// What `cairn init` made.
#[derive(Debug, Clone)]
pub struct Initialized {
    pub peer_id: PeerId,
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
}

/// Creates `data_dir` with a config (the documented defaults, `data_dir` set to this folder), an
/// ed25519 identity key, an admin token and a read-only token, every file mode 0600. Refuses to
/// replace any of them unless `force`.
pub fn init(data_dir: &Path, force: bool) -> Result<Initialized> {
    let data_dir = absolute(data_dir)?;
    std::fs::create_dir_all(&data_dir).map_err(|source| Error::Io {
        what: "creating the data directory",
        source,
    })?;
    let config_text = config_for(&data_dir);
    // What we write must be what the daemon accepts.
    let config = Config::from_toml(&config_text, &data_dir.join(CONFIG_FILE))?.validate()?;
    let files = [
        data_dir.join(CONFIG_FILE),
        data_dir.join(IDENTITY_FILE),
        config.resolve(&config.raw().admin.token_file),
        config.resolve(&config.raw().admin.readonly_token_file),
    ];
    if !force && let Some(existing) = files.iter().find(|f| f.exists()) {
        return Err(Error::Exists(existing.clone()));
    }
    let identity = NodeIdentity::generate();
    let [config_file, identity_file, admin_token, readonly_token] = &files;
    // The config holds no secret, but nobody else needs to read it either.
    write_secret(config_file, config_text.as_bytes(), force)?;
    write_secret(identity_file, &identity.to_bytes()?, force)?;
    write_secret(admin_token, format!("{}\n", new_token()?).as_bytes(), force)?;
    write_secret(
        readonly_token,
        format!("{}\n", new_token()?).as_bytes(),
        force,
    )?;
    Ok(Initialized {
        peer_id: identity.peer_id(),
        data_dir,
        config_file: config_file.clone(),
    })
}

/// The example config with `data_dir` pointing at `data_dir`, comments and all.
fn config_for(data_dir: &Path) -> String {
    let quoted = toml::Value::String(data_dir.display().to_string()).to_string();
    EXAMPLE_CONFIG.replacen(
        "data_dir = \"/var/lib/cairn\"",
        &format!("data_dir = {quoted}"),
        1,
    )
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|source| Error::Io {
        what: "resolving the data directory",
        source,
    })
}

/// Finds a node's configuration the way every command does: `--config FILE` if given, else
/// `config.toml` in the data directory (`--data-dir`, else `CAIRN_DATA_DIR`, else the default)
/// when it exists, else the defaults; `CAIRN_…` overrides apply, and `--data-dir` wins over all.
pub fn load_config(data_dir: Option<&Path>, config_file: Option<&Path>) -> Result<ValidConfig> {
    let dir = match data_dir {
        Some(d) => absolute(d)?,
        None => match std::env::var_os("CAIRN_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => Config::default().data_dir,
        },
    };
    let in_dir = dir.join(CONFIG_FILE);
    let file = match config_file {
        Some(f) => Some(f.to_owned()),
        None => in_dir.exists().then_some(in_dir),
    };
    let mut config = Config::load(file.as_deref())?;
    if data_dir.is_some() {
        config.data_dir = dir;
    }
    Ok(config.validate()?)
}

/// The systemd credential that, when present, holds the identity key instead of the data
/// directory (`LoadCredential=identity.key:…` or `LoadCredentialEncrypted=…`).
pub const IDENTITY_CREDENTIAL: &str = "identity.key";

/// Where the identity key is read from: the systemd credential when the service manager passed
/// one (`$CREDENTIALS_DIRECTORY/identity.key`), else `identity.key` in the data directory.
pub fn identity_path(config: &ValidConfig) -> PathBuf {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let credential = PathBuf::from(dir).join(IDENTITY_CREDENTIAL);
        if credential.exists() {
            return credential;
        }
    }
    config.data_dir().join(IDENTITY_FILE)
}

/// The systemd credential that holds the passphrase of an encrypted identity key.
pub const PASSPHRASE_CREDENTIAL: &str = "identity.passphrase";

/// The passphrase for an encrypted identity key: the systemd credential when passed, else
/// `identity.passphrase_file`; `None` when neither is set.
fn read_passphrase(config: &ValidConfig) -> Result<Option<Vec<u8>>> {
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join(PASSPHRASE_CREDENTIAL))
        .filter(|path| path.exists());
    let configured = &config.raw().identity.passphrase_file;
    let path = match credential {
        Some(path) => path,
        None if configured.as_os_str().is_empty() => return Ok(None),
        None => config.resolve(configured),
    };
    Ok(Some(sealed_key::passphrase(&read_secret(&path)?)?))
}

/// Encrypts the node's identity key in place with the passphrase in `passphrase_file`; the daemon
/// then needs that passphrase (see [`load_identity`]) to start.
pub fn encrypt_identity(config: &ValidConfig, passphrase_file: &Path) -> Result<PathBuf> {
    let path = identity_path(config);
    let bytes = read_secret(&path)?;
    if sealed_key::is_sealed(&bytes) {
        return Err(Error::BadRequest(format!(
            "{} is encrypted already",
            path.display()
        )));
    }
    // Only a valid key gets sealed: a broken one should fail now, not at the next start.
    NodeIdentity::from_bytes(&bytes)?;
    let passphrase = sealed_key::passphrase(&read_secret(passphrase_file)?)?;
    write_secret(&path, &sealed_key::seal(&bytes, &passphrase)?, true)?;
    Ok(path)
}

/// Reads the node's identity key (see [`identity_path`]), refusing one that others can read, and
/// opening an encrypted one with its passphrase.
pub fn load_identity(config: &ValidConfig) -> Result<NodeIdentity> {
    let path = identity_path(config);
    let mut bytes = read_secret(&path)?;
    if sealed_key::is_sealed(&bytes) {
        let passphrase = read_passphrase(config)?.ok_or_else(|| Error::Secret {
            path: path.clone(),
            problem: "is encrypted and no passphrase was given".into(),
            fix: "set identity.passphrase_file, or pass the systemd credential identity.passphrase"
                .into(),
        })?;
        bytes = sealed_key::open(&bytes, &passphrase).map_err(|e| Error::Secret {
            path: path.clone(),
            problem: e.to_string(),
            fix: "check the passphrase (identity.passphrase_file or the credential)".into(),
        })?;
    }
    NodeIdentity::from_bytes(&bytes).map_err(|e| Error::Secret {
        path,
        problem: e.to_string(),
        fix: "restore the key from a backup, or `cairn init --force` for a new identity".into(),
    })
}
