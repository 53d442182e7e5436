//! Walking a DAG through any [`Blockstore`].

use std::collections::{HashSet, VecDeque};

use cid::Cid;
use multihash::Multihash;

use crate::block::{DAG_PB, links};
use crate::error::{Error, Result};
use crate::{Blockstore, Written};

/// Visits `root` and every block below it once, breadth first. DAG-PB nodes are read (and so
/// verified) to find their links; raw leaves are checked for presence only. A missing block stops
/// the walk with [`Error::Incomplete`]; a corrupt one with [`Error::HashMismatch`].
pub fn walk<S: Blockstore + ?Sized>(store: &S, root: &Cid, visit: impl FnMut(&Cid)) -> Result<()> {
    walk_knowing(store, root, None, visit)
}

/// [`walk`], taking `known` blocks (and the links of known DAG-PB nodes) as stored without
/// reading them. The caller vouches that `known` still holds (see [`Written`]).
pub(crate) fn walk_knowing<S: Blockstore + ?Sized>(
    store: &S,
    root: &Cid,
    known: Option<&Written>,
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
        if let Some(links) = known.and_then(|w| w.links_of(&cid)) {
            queue.extend(links.iter().copied());
        } else if cid.codec() == DAG_PB {
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
