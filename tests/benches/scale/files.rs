//! The file-size curve: add over gRPC and node-to-node verified transfer of 1 MiB to 4 GiB, in
//! MiB/s. Two nodes in this process on loopback, R = 1, so each add is the import alone and each
//! transfer is the fetch a replica target runs. Each file is distinct content.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_config::{Config, HumanDuration};
use cairn_proto::admin;
use cairn_tests::{TestNode, join_cluster, start_cluster, stop_all};
use cid::Cid;

use crate::{Csv, mib_per_s};

/// File sizes, and how many files of each are timed (small ones are noisy alone).
const SIZES: [(u64, usize); 4] = [(1 << 20, 16), (64 << 20, 4), (1 << 30, 1), (4 << 30, 1)];
/// Bytes per gRPC message, as the CLI sends them.
const MESSAGE: usize = 256 * 1024;

/// Adds `data` over gRPC, streaming slices of it (no copy of the file on the sending side).
async fn add(node: &TestNode, data: Bytes) -> (Cid, Duration) {
    let mut client = node.admin().await.unwrap();
    let len = data.len();
    let messages = (0..len.div_ceil(MESSAGE)).map(move |i| admin::AddFileRequest {
        options: (i == 0).then(|| admin::AddOptions {
            cid_version: Some(1),
            ..Default::default()
        }),
        data: data.slice(i * MESSAGE..((i + 1) * MESSAGE).min(len)),
    });
    let started = Instant::now();
    let reply = client
        .add_file(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    assert_eq!(reply.size, len as u64, "{reply:?}");
    (reply.cid.parse().unwrap(), took)
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn spread(rates: &[f64]) -> String {
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    if rates.len() > 1 {
        format!("{lo:.0}–{hi:.0}")
    } else {
        format!("{lo:.0}")
    }
}

pub(crate) async fn run() {
    let csv = Csv::create(
        "files.csv",
        "file_bytes,files,add_mib_per_s,transfer_mib_per_s",
    );
    // The source adds alone (with R = 1 and a peer, placement could send the file to the peer,
    // which would then hold it before its fetch); the reader joins once every file is in. No
    // audits or repairs during the run: nothing but the measured work.
    let quiet = |c: &mut Config| {
        c.replication.factor = 1;
        c.replication.write_quorum = 1;
        c.replication.audit_interval = HumanDuration::secs(3600);
        c.replication.repair_grace = HumanDuration::secs(3600);
    };
    let source = start_cluster(1, |_, c| quiet(c)).await.unwrap().remove(0);
    println!("\nfile size: add over gRPC, then a verified fetch by a second node (R = 1)");
    let (mut added, mut adds) = (Vec::new(), Vec::new());
    for (size, files) in SIZES {
        let mut rates = Vec::new();
        for n in 0..files {
            let seed = size << 8 | n as u64;
            let data = Bytes::from(cairn_tests::random_bytes(size as usize, seed));
            let (root, took) = add(&source, data).await;
            rates.push(mib_per_s(size, took));
            added.push((size, root));
        }
        adds.push(rates);
    }
    let reader = join_cluster(&source, quiet).await.unwrap();
    println!("| file | files | add MiB/s (median, spread) | transfer MiB/s (median, spread) |");
    println!("|---|---|---|---|");
    for ((size, files), adds) in SIZES.into_iter().zip(adds) {
        let mut transfers = Vec::new();
        for (_, root) in added.iter().filter(|(s, _)| *s == size) {
            let started = Instant::now();
            let report = cairn_node::fetch::fetch_dag(
                reader.handle.node_store(),
                reader.handle.network(),
                *root,
            )
            .await
            .unwrap();
            transfers.push(mib_per_s(size, started.elapsed()));
            assert!(
                report.bytes >= size,
                "a fetch that fetched nothing: {report:?}"
            );
        }
        let label = if size >= 1 << 30 {
            format!("{} GiB", size >> 30)
        } else {
            format!("{} MiB", size >> 20)
        };
        println!(
            "| {label} | {files} | {:.0} ({}) | {:.0} ({}) |",
            median(adds.clone()),
            spread(&adds),
            median(transfers.clone()),
            spread(&transfers)
        );
        csv.row(&[
            size.to_string(),
            files.to_string(),
            format!("{:.1}", median(adds)),
            format!("{:.1}", median(transfers)),
        ]);
    }
    stop_all(vec![source, reader]).await.unwrap();
}
