//! `make bench-scale`: how cost grows with the work, in three curves (issue 16).
//!
//! - `store`: put and get rates of the verified blockstore, and RocksDB's space amplification,
//!   as one store grows through 10k, 100k and 1M blocks of 1 KiB and of 256 KiB (sizes that would
//!   take more than half the free disk are skipped, and say so).
//! - `cluster`: clusters of 5, 20 and 50 nodes in this process on loopback: the time to form
//!   (every node started, and each knows as many peers as a Kademlia bucket holds or the whole
//!   cluster), an add with R = 3 until every receipt is in, the repair after a fifth of the nodes
//!   are stopped, and the process's memory per node.
//! - `files`: add over gRPC and node-to-node verified transfer of 1 MiB, 64 MiB, 1 GiB and 4 GiB
//!   files, in MiB/s: a flat line means cost grows with size and nothing else.
//!
//! Each part prints a Markdown table and writes a CSV under `target/bench-scale/` (or
//! `BENCH_SCALE_OUT`), which `scripts/plot-scale.py` draws. Arguments pick parts by name; none
//! runs all three; `RUST_LOG` turns on the nodes' logs.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::time::Duration;

mod cluster;
mod files;
mod store;

const MIB: f64 = (1u64 << 20) as f64;

/// Where the CSVs go.
fn out_dir() -> PathBuf {
    let dir = std::env::var_os("BENCH_SCALE_OUT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-scale"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CSV of one part's rows, written as they are measured (a run cut short keeps what it has).
struct Csv {
    path: PathBuf,
}

impl Csv {
    fn create(name: &str, header: &str) -> Self {
        let path = out_dir().join(name);
        std::fs::write(&path, format!("{header}\n")).unwrap();
        Self { path }
    }

    /// A CSV another process of this bench created.
    fn existing(name: &str) -> Self {
        Self {
            path: out_dir().join(name),
        }
    }

    fn row(&self, fields: &[String]) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .unwrap();
        writeln!(file, "{}", fields.join(",")).unwrap();
    }
}

fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB / took.as_secs_f64()
}

/// Bytes free on the file system that holds `dir`, from `df` (no unsafe `statvfs` here).
fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// This process's resident memory in bytes.
fn rss() -> u64 {
    cairn_tests::daemon::rss_of(std::process::id()).unwrap()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Ok(n) = std::env::var(cluster::ONE_SIZE_VAR) {
        return cluster::run_one(n.parse().unwrap()).await;
    }
    let runs = |part: &str| picked.is_empty() || picked.iter().any(|p| p == part);
    println!("CSVs in {}", out_dir().display());
    if runs("store") {
        store::run();
    }
    if runs("cluster") {
        cluster::run().await;
    }
    if runs("files") {
        files::run().await;
    }
}
