//! What the CLI prints: every result is a serde struct here, and these structs are the
//! documented `--json` contract (DESIGN.md §11, README "Scripting"). Keep them stable; extend
//! them freely.
//!
//! One shape rule for every command: `--json` prints JSON Lines — one object per line, one line
//! per thing the command reports. A command about one thing (`status`, `pin status`, `repo
//! stat`) prints one line; a command that lists or acts on several (`pin ls`, `peers ls`, `add`
//! of several paths, `car import`, `init-cluster`) prints one line per item, and nothing for an
//! empty list. Text output is for people and may change.

use std::path::PathBuf;

use serde::Serialize;

/// A result the CLI prints: as one JSON line with `--json`, else as text.
pub trait Report: Serialize {
    fn text(&self) -> String;
}

/// Prints `item` on stdout as JSON (one line) or as its text.
pub fn emit(json: bool, item: &impl Report) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(item)?);
    } else {
        println!("{}", item.text());
    }
    Ok(())
}

/// Prints every item of a list, one line each.
pub fn emit_all<'a, T: Report + 'a>(
    json: bool,
    items: impl IntoIterator<Item = &'a T>,
) -> anyhow::Result<()> {
    for item in items {
        emit(json, item)?;
    }
    Ok(())
}

fn under_replicated_note(cid: &str, holders: usize, factor: u32) -> String {
    format!("{cid}: under-replicated for now: {holders} of {factor} copies confirmed")
}

/// `cairn add`: one line per path.
#[derive(Debug, Serialize)]
pub struct Added {
    pub cid: String,
    pub name: String,
    pub size: u64,
    pub blocks: u64,
    /// With `--encrypt`: the capability (root CID and key) that `cat` needs.
    pub capability: Option<String>,
    pub replication_factor: u32,
    pub holders: Vec<String>,
    pub under_replicated: bool,
}

impl Report for Added {
    fn text(&self) -> String {
        self.capability.clone().unwrap_or_else(|| self.cid.clone())
    }
}

impl Added {
    /// The warning people see on stderr when the write quorum was not reached.
    pub fn warning(&self) -> Option<String> {
        self.under_replicated
            .then(|| under_replicated_note(&self.cid, self.holders.len(), self.replication_factor))
    }
}

/// `cairn pin add`.
#[derive(Debug, Serialize)]
pub struct Pinned {
    pub cid: String,
    pub pinned: bool,
    pub replication_factor: u32,
    pub holders: Vec<String>,
    pub under_replicated: bool,
}

impl Report for Pinned {
    fn text(&self) -> String {
        format!("pinned {}", self.cid)
    }
}

impl Pinned {
    pub fn warning(&self) -> Option<String> {
        self.under_replicated
            .then(|| under_replicated_note(&self.cid, self.holders.len(), self.replication_factor))
    }
}

/// `cairn pin rm`.
#[derive(Debug, Serialize)]
pub struct Unpinned {
    pub cid: String,
    /// Whether the root is still pinned (by other owners) after this unpin.
    pub pinned: bool,
}

impl Report for Unpinned {
    fn text(&self) -> String {
        if self.pinned {
            format!(
                "unpinned this owner's pin on {}; other owners still pin it",
                self.cid
            )
        } else {
            format!(
                "unpinned {} (holders keep its blocks for replication.unpin_grace; \
                 `cairn pin restore` undoes this until then)",
                self.cid
            )
        }
    }
}

/// `cairn pin restore`.
#[derive(Debug, Serialize)]
pub struct Restored {
    pub cid: String,
    pub pinned: bool,
    pub replication_factor: u32,
}

impl Report for Restored {
    fn text(&self) -> String {
        format!("restored {}", self.cid)
    }
}

/// `cairn pin ls`: one line per pin (or, with `--unpinned`, per root in its unpin grace).
#[derive(Debug, Serialize)]
pub struct PinEntry {
    pub cid: String,
    /// `recursive`, `direct` or `unpinned`.
    pub mode: String,
    /// For an unpinned root: when its blocks become collectable (Unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl Report for PinEntry {
    fn text(&self) -> String {
        match self.expires_at_ms {
            Some(at) => format!("{} {} until {}", self.cid, self.mode, utc(at)),
            None => format!("{} {}", self.cid, self.mode),
        }
    }
}

/// Unix milliseconds as an RFC 3339 UTC time, for people.
fn utc(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `cairn operator-key new|id`.
#[derive(Debug, Serialize)]
pub struct OperatorKey {
    pub key_id: String,
    pub path: PathBuf,
}

impl Report for OperatorKey {
    fn text(&self) -> String {
        format!(
            "{} (list it in replication.operators on every node; keep {} off the nodes)",
            self.key_id,
            self.path.display()
        )
    }
}

/// `cairn pin status`.
#[derive(Debug, Serialize)]
pub struct PinStatus {
    pub cid: String,
    /// `ok`, `under_replicated`, `repairing` or `unpinned`.
    pub state: String,
    pub replication_factor: u32,
    pub live_replicas: u32,
    pub failure_budget: i64,
    pub holders: Vec<Holder>,
    pub record_version: u64,
    pub record_signer: String,
    /// Every owner's pin on the root.
    pub owners: Vec<PinOwner>,
}

/// One owner's pin on a root, as `pin status` shows it.
#[derive(Debug, Serialize)]
pub struct PinOwner {
    pub owner: String,
    /// `pinned` or `unpinned`.
    pub state: String,
    pub replication_factor: u32,
    pub version: u64,
    pub signer: String,
}

/// One holder of a pin, as `pin status` sees it.
#[derive(Debug, Serialize)]
pub struct Holder {
    pub peer_id: String,
    /// `live`, `unreachable`, `failed_audit` or `released`.
    pub state: String,
    /// A live copy: it answered, and counts towards the failure budget.
    pub live: bool,
    /// It proved possession of a random block during this call.
    pub audited: bool,
    /// Why it is not live.
    pub detail: String,
}

impl Report for PinStatus {
    fn text(&self) -> String {
        let mut text = format!(
            "cid             {}\nstate           {}\nlive replicas   {} of {}\nfailure budget  {}",
            self.cid, self.state, self.live_replicas, self.replication_factor, self.failure_budget
        );
        for h in &self.holders {
            let audited = if h.audited { "audited" } else { "" };
            text.push_str(&format!(
                "\n  {} {} {} {}",
                h.peer_id, h.state, audited, h.detail
            ));
        }
        for o in &self.owners {
            text.push_str(&format!(
                "\n  owner {} {} (factor {}, signed by {})",
                o.owner, o.state, o.replication_factor, o.signer
            ));
        }
        text
    }
}

/// `cairn status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub peer_id: String,
    pub version: String,
    pub connected_peers: u64,
    pub listen_addrs: Vec<String>,
    pub blocks: u64,
    pub bytes: u64,
    pub pins: u64,
    pub quarantined_blocks: u64,
    pub under_replicated_pins: u64,
    /// `null` until this node holds a replicated pin.
    pub min_failure_budget: Option<i64>,
    /// `private` (an allowlist names the admitted peers) or `open`.
    pub network: String,
}

impl Report for Status {
    fn text(&self) -> String {
        let mut text = format!(
            "peer ID      {}\nversion      {}\nnetwork      {}\npeers        {}\nlistening    {}\n\
             blocks       {} ({} bytes)\npins         {}\nquarantined  {}\n\
             under-replicated pins  {}",
            self.peer_id,
            self.version,
            self.network,
            self.connected_peers,
            self.listen_addrs.join(" "),
            self.blocks,
            self.bytes,
            self.pins,
            self.quarantined_blocks,
            self.under_replicated_pins
        );
        if let Some(budget) = self.min_failure_budget {
            text.push_str(&format!("\nmin failure budget     {budget}"));
        }
        text
    }
}

/// `cairn peers ls`: one line per connected peer (`--all`: and per routing-table entry).
#[derive(Debug, Serialize)]
pub struct PeerEntry {
    pub peer_id: String,
    pub addrs: Vec<String>,
    pub connected: bool,
    pub in_routing_table: bool,
}

impl Report for PeerEntry {
    fn text(&self) -> String {
        format!("{} {}", self.peer_id, self.addrs.join(" "))
    }
}

/// `cairn peers connect`.
#[derive(Debug, Serialize)]
pub struct Connected {
    pub peer_id: String,
    pub addr: String,
}

impl Report for Connected {
    fn text(&self) -> String {
        format!("connected to {}", self.peer_id)
    }
}

/// `cairn peers ban`.
#[derive(Debug, Serialize)]
pub struct Banned {
    pub peer_id: String,
    pub banned: bool,
}

impl Report for Banned {
    fn text(&self) -> String {
        format!("banned {}", self.peer_id)
    }
}

/// `cairn block put`.
#[derive(Debug, Serialize)]
pub struct BlockPut {
    pub cid: String,
    pub size: u64,
}

impl Report for BlockPut {
    fn text(&self) -> String {
        self.cid.clone()
    }
}

/// `cairn block stat`.
#[derive(Debug, Serialize)]
pub struct BlockStat {
    pub cid: String,
    pub size: u64,
    /// Unix seconds of the last scrub that verified it; 0 when none has.
    pub last_verified: u64,
}

impl Report for BlockStat {
    fn text(&self) -> String {
        format!(
            "{} {} bytes, last verified {}",
            self.cid, self.size, self.last_verified
        )
    }
}

/// `cairn block rm`.
#[derive(Debug, Serialize)]
pub struct BlockRemoved {
    pub cid: String,
    pub removed: bool,
}

impl Report for BlockRemoved {
    fn text(&self) -> String {
        format!("removed {}", self.cid)
    }
}

/// `cairn repo stat`.
#[derive(Debug, Serialize)]
pub struct RepoStat {
    pub blocks: u64,
    pub bytes: u64,
    pub quarantined_blocks: u64,
    /// 0: no quota.
    pub max_bytes: u64,
}

impl Report for RepoStat {
    fn text(&self) -> String {
        format!(
            "blocks {}\nbytes {}\nquarantined {}\nmax_bytes {}",
            self.blocks, self.bytes, self.quarantined_blocks, self.max_bytes
        )
    }
}

/// `cairn repo verify` and `cairn repo scrub`.
#[derive(Debug, Serialize)]
pub struct Scrubbed {
    pub blocks_checked: u64,
    pub bytes_checked: u64,
    /// CIDs of the corrupt blocks found (now quarantined).
    pub corrupt: Vec<String>,
}

impl Report for Scrubbed {
    fn text(&self) -> String {
        let mut text = format!(
            "checked {} blocks ({} bytes), {} corrupt",
            self.blocks_checked,
            self.bytes_checked,
            self.corrupt.len()
        );
        for cid in &self.corrupt {
            text.push_str(&format!("\ncorrupt {cid} (quarantined)"));
        }
        text
    }
}

/// `cairn repo gc`.
#[derive(Debug, Serialize)]
pub struct Collected {
    pub removed_blocks: u64,
    pub removed_bytes: u64,
}

impl Report for Collected {
    fn text(&self) -> String {
        format!(
            "removed {} blocks ({} bytes)",
            self.removed_blocks, self.removed_bytes
        )
    }
}

/// `cairn car export`.
#[derive(Debug, Serialize)]
pub struct CarExported {
    pub cid: String,
    pub file: PathBuf,
    pub bytes: u64,
}

impl Report for CarExported {
    fn text(&self) -> String {
        format!("{} -> {}", self.cid, self.file.display())
    }
}

/// `cairn car import`: one line per root.
#[derive(Debug, Serialize)]
pub struct CarImported {
    pub root: String,
    /// Blocks and bytes of the whole file (the same on every line).
    pub blocks: u64,
    pub bytes: u64,
}

impl Report for CarImported {
    fn text(&self) -> String {
        self.root.clone()
    }
}

/// `cairn get`.
#[derive(Debug, Serialize)]
pub struct Saved {
    pub file: PathBuf,
}

impl Report for Saved {
    fn text(&self) -> String {
        format!("saved {}", self.file.display())
    }
}

/// `cairn init`.
#[derive(Debug, Serialize)]
pub struct Initialised {
    pub peer_id: String,
    pub data_dir: PathBuf,
    pub config: PathBuf,
}

impl Report for Initialised {
    fn text(&self) -> String {
        self.peer_id.clone()
    }
}

/// `cairn init-cluster`: one line per host.
#[derive(Debug, Serialize)]
pub struct ClusterMember {
    pub host: String,
    pub peer_id: String,
    pub data_dir: PathBuf,
}

impl Report for ClusterMember {
    fn text(&self) -> String {
        format!("{} {}", self.host, self.peer_id)
    }
}

/// `cairn id`.
#[derive(Debug, Serialize)]
pub struct Identity {
    pub peer_id: String,
    /// The configured listen addresses.
    pub addrs: Vec<String>,
}

impl Report for Identity {
    fn text(&self) -> String {
        std::iter::once(self.peer_id.clone())
            .chain(self.addrs.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `cairn encrypt-key`.
#[derive(Debug, Serialize)]
pub struct KeyEncrypted {
    pub encrypted: PathBuf,
}

impl Report for KeyEncrypted {
    fn text(&self) -> String {
        format!(
            "{} is encrypted; the daemon now needs identity.passphrase_file (or the \
             identity.passphrase credential)",
            self.encrypted.display()
        )
    }
}

/// `cairn rotate-token`.
#[derive(Debug, Serialize)]
pub struct TokenRotated {
    pub token_file: String,
}

impl Report for TokenRotated {
    fn text(&self) -> String {
        format!("new token written to {}", self.token_file)
    }
}

/// `cairn health`.
#[derive(Debug, Serialize)]
pub struct Health {
    pub serving: bool,
}

impl Report for Health {
    fn text(&self) -> String {
        "serving".into()
    }
}

/// `cairn config validate`.
#[derive(Debug, Serialize)]
pub struct ConfigValid {
    pub valid: bool,
}
