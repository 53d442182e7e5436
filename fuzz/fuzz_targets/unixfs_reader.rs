//! UnixFS reading of hostile DAG-PB: the input is split into blocks (the first a DAG-PB root, the
//! rest raw or DAG-PB by a flag byte), stored, and read back as a file. Links to missing blocks,
//! cycles that hashes cannot make, sizes that lie, nesting — all must end in an error or a result,
//! never a panic or an endless read.
#![no_main]

use cairn_blockstore::{Block, DAG_PB, HashAlg, MemBlockstore, RAW, StoreOptions, links};
use cairn_node::unixfs::FileReader;
use libfuzzer_sys::fuzz_target;

/// Most output read before the target stops (a valid file this size is fine).
const MAX_READ: usize = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let store = MemBlockstore::new(StoreOptions::default());
    let mut parts = data.split(|b| *b == 0xff);
    let Some(root) = parts.next() else {
        return;
    };
    let root = Block::build(DAG_PB, HashAlg::Sha2_256, root.to_vec());
    let _ = links(&root.cid, &root.data);
    if store.put(&root).is_err() {
        return;
    }
    for part in parts {
        let Some((flag, bytes)) = part.split_first() else {
            continue;
        };
        let codec = if flag % 2 == 0 { RAW } else { DAG_PB };
        let _ = store.put(&Block::build(codec, HashAlg::Sha2_256, bytes.to_vec()));
    }
    let mut read = 0usize;
    for piece in FileReader::new(&store, root.cid) {
        match piece {
            Ok(bytes) => {
                read += bytes.len();
                if read > MAX_READ {
                    break;
                }
            }
            Err(_) => break,
        }
    }
});
