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

/// Visits `root` and every CID below it once, breadth first, reading only the DAG-PB nodes
/// (verified) to find their links: the other blocks are named, neither read nor checked for
/// presence. For callers that read the few blocks they pick anyway (audit samples): an engine's
/// presence check may load a block's whole value, and a walk that checks every leaf reads the
/// whole file.
pub fn walk_names<S: Blockstore + ?Sized>(
    store: &S,
    root: &Cid,
    visit: impl FnMut(&Cid),
) -> Result<()> {
    walk_with(store, root, Leaves::Named, visit)
}

/// [`walk`], taking `known` blocks (and the links of known DAG-PB nodes) as stored without
/// reading them. The caller vouches that `known` still holds (see [`Written`]).
pub(crate) fn walk_knowing<S: Blockstore + ?Sized>(
    store: &S,
    root: &Cid,
    known: Option<&Written>,
    visit: impl FnMut(&Cid),
) -> Result<()> {
    walk_with(store, root, Leaves::Checked(known), visit)
}

/// What a walk does with a block it does not read for links.
#[derive(Clone, Copy)]
enum Leaves<'a> {
    /// Checks it is stored, unless the writer's record says so (see [`walk_knowing`]).
    Checked(Option<&'a Written>),
    /// Only names it (see [`walk_names`]).
    Named,
}

fn walk_with<S: Blockstore + ?Sized>(
    store: &S,
    root: &Cid,
    leaves: Leaves<'_>,
    mut visit: impl FnMut(&Cid),
) -> Result<()> {
    let known = match leaves {
        Leaves::Checked(known) => known,
        Leaves::Named => None,
    };
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
        } else if matches!(leaves, Leaves::Checked(_)) && !store.has(&cid)? {
            return Err(incomplete(cid));
        }
        visit(&cid);
    }
    Ok(())
}
