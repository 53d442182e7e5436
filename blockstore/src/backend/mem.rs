//! An in-memory engine: for tests and for nodes that must not touch disk.

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::RwLock;

use super::{Backend, Batch, Cf, Op, add_counters};
use crate::error::{Error, Result};

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Default)]
pub struct MemBackend {
    tables: RwLock<BTreeMap<Cf, Table>>,
}

impl MemBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

fn range<'a>(
    table: &'a Table,
    prefix: &'a [u8],
    after: Option<&[u8]>,
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
    let start = match after {
        Some(key) => Bound::Excluded(key.to_vec()),
        None => Bound::Included(prefix.to_vec()),
    };
    table
        .range((start, Bound::Unbounded))
        .skip_while(move |(k, _)| k.as_slice() < prefix)
        .take_while(move |(k, _)| k.starts_with(prefix))
}

impl Backend for MemBackend {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tables
            .read()
            .get(&cf)
            .and_then(|t| t.get(key).cloned()))
    }

    fn write(&self, batch: Batch) -> Result<()> {
        // One write lock for the whole batch: readers see all of it or none of it.
        let mut tables = self.tables.write();
        // Checked before anything is applied, so a bad counter leaves the batch unapplied.
        for op in &batch.ops {
            if let Op::Add(cf, k, _) = op
                && let Some(raw) = tables.get(cf).and_then(|t| t.get(k))
                && super::decode_counters(raw).is_none()
            {
                return Err(Error::Corrupt("a counter is not 16 bytes".into()));
            }
        }
        for op in batch.ops {
            match op {
                Op::Put(cf, k, v) => {
                    tables.entry(cf).or_default().insert(k, v.to_vec());
                }
                Op::Delete(cf, k) => {
                    if let Some(t) = tables.get_mut(&cf) {
                        t.remove(&k);
                    }
                }
                Op::Add(cf, k, delta) => {
                    let table = tables.entry(cf).or_default();
                    let delta = super::encode_counters(delta);
                    if let Some(sum) =
                        add_counters(table.get(&k).map(Vec::as_slice), [delta.as_slice()])
                    {
                        table.insert(k, sum);
                    }
                }
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let tables = self.tables.read();
        let Some(table) = tables.get(&cf) else {
            return Ok(Vec::new());
        };
        Ok(range(table, prefix, after)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_keys(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let tables = self.tables.read();
        let Some(table) = tables.get(&cf) else {
            return Ok(Vec::new());
        };
        Ok(range(table, prefix, after)
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
