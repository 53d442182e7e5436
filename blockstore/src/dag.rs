//! Walking a DAG through any [`Blockstore`].

use std::collections::{HashSet, VecDeque};

use cid::Cid;
use multihash::Multihash;

use crate::Blockstore;
use crate::block::{DAG_PB, links};
use crate::error::{Error, Result};

/// Visits `root` and every block below it once, breadth first. DAG-PB nodes are read (and so
/// verified) to find their links; raw leaves are checked for presence only. A missing block stops
/// the walk with [`Error::Incomplete`]; a corrupt one with [`Error::HashMismatch`].
pub fn walk<S: Blockstore + ?Sized>(
    store: &S,
    root: &Cid,
    mut visit: impl FnMut(&Cid),
) -> Result<()> {
    let mut seen: HashSet<Multihash<64>> = HashSet::new();
    let mut queue = VecDeque::from([*root]);
    let incomplete = |missing| Error::Incomplete {
        root: *root,
        missing,
    };
    while let Some(cid) = queue.pop_front() {
        if !seen.insert(*cid.hash()) {
            continue;
        }
        if cid.codec() == DAG_PB {
            let data = store.get(&cid).map_err(|e| match e {
                Error::NotFound(missing) => incomplete(missing),
                other => other,
            })?;
            queue.extend(links(&cid, &data)?);
        } else if !store.has(&cid)? {
            return Err(incomplete(cid));
        }
        visit(&cid);
    }
    Ok(())
}
