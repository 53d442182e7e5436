//! The config's contract: the example file equals the defaults, overrides work, and every rejected
//! value is refused with a message that names the key and the fix.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use cairn_config::{Config, ConfigError, EXAMPLE_CONFIG, LogFormat, Size};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_toml_with_env(text, Path::new("test.toml"), vars)
}

/// Parses `text` (which must parse) and validates it, returning the validation message.
fn rejection(text: &str) -> String {
    let config = parse(text).expect("parses");
    match config.validate() {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn example_config_parses_and_equals_the_defaults() {
    let example = parse(EXAMPLE_CONFIG).expect("example parses");
    assert_eq!(example, Config::default());
    example.validate().expect("defaults are valid");
}

#[test]
fn example_config_names_every_key() {
    // A key added to the schema but not to the example would leave operators guessing.
    let shown = Config::default().to_toml().expect("serialises");
    let example: toml::Table = toml::from_str(EXAMPLE_CONFIG).expect("toml");
    let shown: toml::Table = toml::from_str(&shown).expect("toml");
    fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in t {
            let path = format!("{prefix}{k}");
            match v {
                toml::Value::Table(inner) => keys(inner, &format!("{path}."), out),
                _ => out.push(path),
            }
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    keys(&example, "", &mut a);
    keys(&shown, "", &mut b);
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn shown_config_reads_back_equal() {
    let mut config = Config::default();
    config.storage.max_bytes = Size(5 * Size::GIB + 7);
    config.log.format = LogFormat::Json;
    let text = config.to_toml().expect("serialises");
    assert_eq!(parse(&text).expect("parses"), config);
}

#[test]
fn empty_file_means_defaults() {
    assert_eq!(parse("").expect("parses"), Config::default());
}

#[test]
fn unknown_keys_are_refused_and_named() {
    let err = parse("[storage]\nmax_bytez = \"1GiB\"\n").expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("max_bytez"), "{msg}");
    assert!(msg.contains("test.toml"), "{msg}");
    let err = parse("[replicaton]\nfactor = 2\n").expect_err("unknown section");
    assert!(err.to_string().contains("replicaton"), "{err}");
}

#[test]
fn wrong_types_are_refused_and_located() {
    let err = parse("[replication]\nfactor = \"three\"\n").expect_err("wrong type");
    assert!(err.to_string().contains("factor"), "{err}");
    let err = parse("[scrub]\ninterval = \"weekly\"\n").expect_err("bad duration");
    assert!(err.to_string().contains("duration"), "{err}");
    let err = parse("[storage]\nmax_bytes = \"lots\"\n").expect_err("bad size");
    assert!(err.to_string().contains("size"), "{err}");
    let err = parse("[log]\nformat = \"xml\"\n").expect_err("bad format");
    assert!(err.to_string().contains("xml"), "{err}");
}

#[test]
fn human_units_are_read() {
    let config = parse("[storage]\nmax_bytes = \"10GiB\"\n[replication]\nrepair_grace = \"90s\"\n")
        .expect("parses");
    assert_eq!(config.storage.max_bytes, Size(10 * Size::GIB));
    assert_eq!(config.replication.repair_grace.get().as_secs(), 90);
}

#[test]
fn environment_overrides_keys() {
    let config = with_env(
        "[replication]\nfactor = 5\n",
        &[
            ("CAIRN_REPLICATION__FACTOR", "2"),
            ("CAIRN_P2P__LIMITS__MAX_CONNECTIONS", "64"),
            ("CAIRN_LOG__LEVEL", "debug"),
            ("CAIRN_STORAGE__MAX_BYTES", "1GiB"),
            ("CAIRN_P2P__ALLOWLIST", "[\"a\", \"b\"]"),
            ("CAIRN_DATA_DIR", "/srv/cairn"),
            ("CAIRN_API", "ignored: not a config key"),
            ("PATH", "/usr/bin"),
        ],
    )
    .expect("overrides apply");
    assert_eq!(config.replication.factor, 2);
    assert_eq!(config.p2p.limits.max_connections, 64);
    assert_eq!(config.log.level, "debug");
    assert_eq!(config.storage.max_bytes, Size(Size::GIB));
    assert_eq!(config.p2p.allowlist, vec!["a".to_owned(), "b".to_owned()]);
    assert_eq!(config.data_dir, Path::new("/srv/cairn"));
}

#[test]
fn unknown_override_names_the_variable() {
    let err = with_env("", &[("CAIRN_REPLICATION__FACTR", "2")]).expect_err("unknown");
    let msg = err.to_string();
    assert!(msg.contains("CAIRN_REPLICATION__FACTR"), "{msg}");
    assert!(msg.contains("replication.factr"), "{msg}");
    let err = with_env("", &[("CAIRN_P2P__LIMITS", "3")]).expect_err("section");
    assert!(err.to_string().contains("section"), "{err}");
}

#[test]
fn bad_override_value_names_the_variable() {
    let err = with_env("", &[("CAIRN_REPLICATION__FACTOR", "many")]).expect_err("bad value");
    assert!(
        err.to_string().contains("CAIRN_REPLICATION__FACTOR"),
        "{err}"
    );
}

const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

#[test]
fn valid_cluster_config_is_typed() {
    let text = format!(
        "[p2p]\nlisten = [\"/ip4/127.0.0.1/tcp/0\", \"/ip4/127.0.0.1/udp/0/quic-v1\"]\n\
         bootstrap = [\"/ip4/10.0.0.2/tcp/4101/p2p/{PEER}\"]\nallowlist = [\"{PEER}\"]\n"
    );
    let valid = parse(&text).expect("parses").validate().expect("valid");
    assert_eq!(valid.listen.len(), 2);
    assert_eq!(valid.bootstrap[0].peer_id.to_string(), PEER);
    assert_eq!(valid.allowlist[0].to_string(), PEER);
    assert_eq!(valid.replication_factor.get(), 3);
    assert_eq!(valid.admin_listen.port(), 4102);
    assert_eq!(
        valid.resolve(Path::new("admin.token")),
        Path::new("/var/lib/cairn/admin.token")
    );
    assert_eq!(valid.resolve(Path::new("/etc/t")), Path::new("/etc/t"));
}

/// Every rejected value: the TOML, the key the message must name, and a word of the fix.
#[test]
fn every_rejected_value_names_its_key_and_fix() {
    let cases: &[(&str, &str, &str)] = &[
        ("data_dir = \"\"", "data_dir", "folder"),
        ("[p2p]\nlisten = []", "p2p.listen", "add an address"),
        ("[p2p]\nlisten = [\"not-an-addr\"]", "p2p.listen", "/ip4/"),
        (
            &format!("[p2p]\nlisten = [\"/ip4/0.0.0.0/tcp/1/p2p/{PEER}\"]"),
            "p2p.listen",
            "drop the /p2p/",
        ),
        (
            "[p2p]\nbootstrap = [\"/ip4/10.0.0.2/tcp/4101\"]",
            "p2p.bootstrap",
            "/p2p/<peer-id>",
        ),
        (
            "[p2p]\nbootstrap = [\"/dns/x/tcp/1/p2p/notapeer\"]",
            "p2p.bootstrap",
            "/ip4/",
        ),
        (
            &format!(
                "[p2p]\nbootstrap = [\"/ip4/10.0.0.2/tcp/1/p2p/{PEER}\"]\nmin_bootstrap_peers = 2"
            ),
            "p2p.min_bootstrap_peers",
            "between 1 and 1",
        ),
        (
            &format!(
                "[p2p]\nbootstrap = [\"/ip4/10.0.0.2/tcp/1/p2p/{PEER}\"]\nmin_bootstrap_peers = 0"
            ),
            "p2p.min_bootstrap_peers",
            "between 1 and 1",
        ),
        ("[p2p]\nallowlist = [\"bob\"]", "p2p.allowlist", "cairn id"),
        (
            "[p2p]\nbootstrap_timeout = \"0s\"",
            "p2p.bootstrap_timeout",
            "greater than 0",
        ),
        (
            "[p2p.limits]\nbytes_per_second = \"1MiB\"",
            "p2p.limits.bytes_per_second",
            "storage.max_block_size",
        ),
        (
            "[p2p.limits]\nmax_connections = 0",
            "p2p.limits.max_connections",
            "greater than 0",
        ),
        (
            "[p2p.limits]\nmax_connections_per_peer = 0",
            "p2p.limits.max_connections_per_peer",
            "greater than 0",
        ),
        (
            "[p2p.limits]\nmax_connections = 4\nmax_connections_per_peer = 8",
            "p2p.limits.max_connections_per_peer",
            "at or below",
        ),
        (
            "[p2p.limits]\nrequests_per_second = 0",
            "p2p.limits.requests_per_second",
            "greater than 0",
        ),
        (
            "[p2p.limits]\nbytes_per_second = \"0\"",
            "p2p.limits.bytes_per_second",
            "greater than 0",
        ),
        (
            "[storage]\nmax_block_size = \"64KiB\"",
            "storage.max_block_size",
            "between 257KiB",
        ),
        (
            "[storage]\nmax_block_size = \"16MiB\"",
            "storage.max_block_size",
            "2MiB",
        ),
        (
            "[storage]\nmax_bytes = \"1KiB\"",
            "storage.max_bytes",
            "at least storage.max_block_size",
        ),
        (
            "[replication]\nfactor = 0",
            "replication.factor",
            "between 1 and 64",
        ),
        (
            "[replication]\nfactor = 65\nwrite_quorum = 1",
            "replication.factor",
            "between 1 and 64",
        ),
        (
            "[replication]\nfactor = 2\nwrite_quorum = 3",
            "replication.write_quorum",
            "between 1 and replication.factor",
        ),
        (
            "[replication]\nwrite_quorum = 0",
            "replication.write_quorum",
            "between 1",
        ),
        (
            "[replication]\nrepair_grace = \"0\"",
            "replication.repair_grace",
            "greater than 0",
        ),
        (
            "[replication]\nrepair_bytes_per_second = 0",
            "replication.repair_bytes_per_second",
            "greater than 0",
        ),
        (
            "[replication]\naudit_interval = \"0s\"",
            "replication.audit_interval",
            "greater than 0",
        ),
        (
            "[replication]\nmax_factor = 2",
            "replication.max_factor",
            "between replication.factor (3)",
        ),
        (
            "[replication]\nmax_factor = 65",
            "replication.max_factor",
            "between replication.factor (3) and 64",
        ),
        (
            "[replication]\noperators = [\"alice\"]",
            "replication.operators",
            "cairn operator-key new",
        ),
        (
            "[replication]\nunpin_grace = \"0s\"",
            "replication.unpin_grace",
            "greater than 0",
        ),
        (
            "[replication]\naudit_deadline = \"0s\"",
            "replication.audit_deadline",
            "greater than 0",
        ),
        (
            "[replication]\nmax_pin_bytes = 0",
            "replication.max_pin_bytes",
            "greater than 0",
        ),
        (
            "[replication]\nmax_share_per_peer = 0",
            "replication.max_share_per_peer",
            "greater than 0",
        ),
        (
            "[replication]\nreplica_fetch_timeout = \"0s\"",
            "replication.replica_fetch_timeout",
            "greater than 0",
        ),
        (
            "[scrub]\ninterval = \"0\"",
            "scrub.interval",
            "greater than 0",
        ),
        (
            "[scrub]\nbytes_per_second = 0",
            "scrub.bytes_per_second",
            "greater than 0",
        ),
        ("[admin]\nlisten = \"localhost\"", "admin.listen", "IP:PORT"),
        (
            "[admin]\ntoken_file = \"\"",
            "admin.token_file",
            "name the token file",
        ),
        (
            "[admin]\nrequests_per_second = 0",
            "admin.requests_per_second",
            "greater than 0",
        ),
        (
            "[admin]\nreadonly_token_file = \"admin.token\"",
            "admin.readonly_token_file",
            "its own file",
        ),
        (
            "[admin]\ntls_cert_file = \"cert.pem\"",
            "admin.tls_key_file",
            "both",
        ),
        (
            "[admin]\ntls_key_file = \"key.pem\"",
            "admin.tls_cert_file",
            "both",
        ),
        (
            "[metrics]\nlisten = \"0.0.0.0\"",
            "metrics.listen",
            "IP:PORT",
        ),
        ("[log]\nlevel = \"loud\"", "log.level", "error, warn"),
        ("[log]\nlevel = \"info,=debug\"", "log.level", "filter"),
        (
            "[gateway]\nenabled = true\nlisten = \"nowhere\"",
            "gateway.listen",
            "IP:PORT",
        ),
        (
            "[gateway]\nenabled = true\nrequests_per_second = 0",
            "gateway.requests_per_second",
            "above 0",
        ),
        (
            "[gateway]\nenabled = true\nmax_streams_per_client = 0",
            "gateway.max_streams_per_client",
            "above 0",
        ),
        (
            "[gateway]\nenabled = true\nbytes_per_second = \"10 B\"",
            "gateway.bytes_per_second",
            "64 MiB",
        ),
    ];
    for (text, key, fix) in cases {
        let msg = rejection(text);
        assert!(
            msg.contains(&format!("`{key}`")),
            "{text}: message does not name {key}: {msg}"
        );
        assert!(
            msg.contains(fix),
            "{text}: message lacks the fix {fix:?}: {msg}"
        );
    }
}

#[test]
fn log_filters_are_accepted() {
    for level in [
        "trace",
        "info,cairn_p2p=debug",
        "warn,libp2p_kad=error,cairn_node::api=trace",
    ] {
        let text = format!("[log]\nlevel = \"{level}\"");
        parse(&text).expect("parses").validate().expect(level);
    }
}

#[test]
fn metrics_can_be_switched_off() {
    let valid = parse("[metrics]\nlisten = \"\"")
        .expect("parses")
        .validate()
        .expect("valid");
    assert!(valid.metrics_listen.is_none());
}

#[test]
fn the_gateway_is_off_unless_enabled() {
    let off = parse("[gateway]\nlisten = \"127.0.0.1:9\"")
        .expect("parses")
        .validate()
        .expect("valid");
    assert!(off.gateway_listen.is_none());
    let on = parse("[gateway]\nenabled = true\nlisten = \"127.0.0.1:9\"")
        .expect("parses")
        .validate()
        .expect("valid");
    assert_eq!(
        on.gateway_listen,
        Some("127.0.0.1:9".parse().expect("addr"))
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.toml");
    let err = Config::load(Some(&path)).expect_err("missing");
    assert!(err.to_string().contains("nope.toml"), "{err}");
}
