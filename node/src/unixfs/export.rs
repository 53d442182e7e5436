//! The exporter: a root CID in, the file's bytes out, in order, every block verified by the store
//! as it is read.

use std::io::Write;

use bytes::Bytes;
use cairn_blockstore::{Blockstore, DAG_PB, RAW};
use cairn_proto::unixfs;
use cid::Cid;
use ipld_dagpb::PbNode;
use prost::Message;

use crate::error::{Error, Result};

/// Raw leaves read (and verified, in parallel) together: 2 MiB of read-ahead.
const READ_AHEAD: usize = 8;
/// Deeper than any file the importer makes (174^16 chunks); a deeper DAG is hostile.
const MAX_DEPTH: usize = 16;

/// Yields a file's bytes piece by piece (one leaf at a time), so a file of any size streams.
pub struct FileReader<'a, S: Blockstore + ?Sized> {
    store: &'a S,
    root: Cid,
    /// Links still to read, one frame per tree level.
    stack: Vec<std::iter::Peekable<std::vec::IntoIter<Cid>>>,
    /// Leaves already read ahead, in file order.
    ready: std::collections::VecDeque<Bytes>,
    /// An error met while reading ahead, reported once the good leaves before it are out.
    failed: Option<Error>,
    started: bool,
    finished: bool,
    /// File size the root declares, checked against what was produced.
    expected: u64,
    produced: u64,
}

impl<S: Blockstore + ?Sized> std::fmt::Debug for FileReader<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("root", &self.root)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl<'a, S: Blockstore + ?Sized> FileReader<'a, S> {
    pub fn new(store: &'a S, root: Cid) -> Self {
        Self {
            store,
            root,
            stack: Vec::new(),
            ready: std::collections::VecDeque::new(),
            failed: None,
            started: false,
            finished: false,
            expected: 0,
            produced: 0,
        }
    }

    /// The file size the root declares (known once the first piece was read).
    pub fn declared_size(&self) -> u64 {
        self.expected
    }

    fn malformed(&self, reason: impl Into<String>) -> Error {
        Error::MalformedDag {
            root: self.root,
            reason: reason.into(),
        }
    }

    /// Reads one block: raw bytes, or a DAG-PB node whose inline data is returned and whose links
    /// are queued.
    fn visit(&mut self, cid: Cid, is_root: bool) -> Result<Bytes> {
        let block = self.store.get(&cid)?;
        match cid.codec() {
            RAW => {
                if is_root {
                    self.expected = block.len() as u64;
                }
                Ok(block)
            }
            DAG_PB => {
                let node = PbNode::from_bytes(block).map_err(|e| Error::NotAFile {
                    cid,
                    reason: format!("not DAG-PB: {e}"),
                })?;
                let meta =
                    unixfs::Data::decode(node.data.clone().unwrap_or_default()).map_err(|e| {
                        Error::NotAFile {
                            cid,
                            reason: format!("no UnixFS data: {e}"),
                        }
                    })?;
                let kind = unixfs::data::DataType::try_from(meta.r#type).ok();
                if !matches!(
                    kind,
                    Some(unixfs::data::DataType::File | unixfs::data::DataType::Raw)
                ) {
                    return Err(Error::NotAFile {
                        cid,
                        reason: format!("UnixFS type {} is not a file", meta.r#type),
                    });
                }
                let inline = meta.data.unwrap_or_default();
                if !node.links.is_empty() && meta.blocksizes.len() != node.links.len() {
                    return Err(self.malformed(format!(
                        "node {cid} has {} links but {} block sizes",
                        node.links.len(),
                        meta.blocksizes.len()
                    )));
                }
                let below: u64 = meta.blocksizes.iter().sum();
                let total = inline.len() as u64 + below;
                if let Some(declared) = meta.filesize
                    && declared != total
                {
                    return Err(self.malformed(format!(
                        "node {cid} declares {declared} bytes but holds {total}"
                    )));
                }
                if is_root {
                    self.expected = total;
                }
                if !node.links.is_empty() {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(self.malformed(format!("deeper than {MAX_DEPTH} levels")));
                    }
                    let links: Vec<Cid> = node.links.into_iter().map(|l| l.cid).collect();
                    self.stack.push(links.into_iter().peekable());
                }
                Ok(inline)
            }
            codec => Err(Error::NotAFile {
                cid,
                reason: format!("codec {codec:#x} is not raw or dag-pb"),
            }),
        }
    }

    fn next_piece(&mut self) -> Result<Option<Bytes>> {
        if !self.started {
            self.started = true;
            let piece = self.visit(self.root, true)?;
            if !piece.is_empty() {
                return Ok(Some(piece));
            }
        }
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Ok(Some(piece));
            }
            if let Some(err) = self.failed.take() {
                return Err(err);
            }
            let Some(frame) = self.stack.last_mut() else {
                if self.produced != self.expected {
                    return Err(self.malformed(format!(
                        "root declares {} bytes, the DAG holds {}",
                        self.expected, self.produced
                    )));
                }
                return Ok(None);
            };
            // A run of raw leaves is read in one batch.
            let mut leaves = Vec::new();
            while leaves.len() < READ_AHEAD
                && let Some(cid) = frame.next_if(|c| c.codec() == RAW)
            {
                leaves.push(cid);
            }
            if !leaves.is_empty() {
                for piece in self.store.get_many(&leaves)? {
                    match piece {
                        Ok(piece) => self.ready.push_back(piece),
                        Err(e) => {
                            self.failed = Some(e.into());
                            break;
                        }
                    }
                }
                continue;
            }
            match frame.next() {
                Some(cid) => {
                    let piece = self.visit(cid, false)?;
                    if !piece.is_empty() {
                        return Ok(Some(piece));
                    }
                }
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

impl<S: Blockstore + ?Sized> Iterator for FileReader<'_, S> {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.next_piece() {
            Ok(Some(piece)) => {
                self.produced += piece.len() as u64;
                if self.produced > self.expected {
                    self.finished = true;
                    return Some(Err(self.malformed(format!(
                        "DAG holds more than the {} bytes its root declares",
                        self.expected
                    ))));
                }
                Some(Ok(piece))
            }
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

/// Writes the file under `root` to `out`; returns the bytes written.
pub fn export_to<S: Blockstore + ?Sized>(
    store: &S,
    root: Cid,
    out: &mut impl Write,
) -> Result<u64> {
    let mut written = 0;
    for piece in FileReader::new(store, root) {
        let piece = piece?;
        out.write_all(&piece).map_err(|source| Error::Io {
            what: "writing the exported file",
            source,
        })?;
        written += piece.len() as u64;
    }
    Ok(written)
}
