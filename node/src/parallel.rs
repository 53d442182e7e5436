//! Work spread over the machine's cores: hashing is what bounds the data path, and it splits
//! perfectly by block.

use crate::error::{Error, Result};

/// `f` over `items` in order, the items split over the machine's cores (at most four).
pub fn on_every_core<T: Sync, R: Send>(
    what: &'static str,
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get().min(4))
        .min(items.len());
    if threads <= 1 {
        return Ok(items.iter().map(f).collect());
    }
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for worker in workers {
            out.extend(worker.join().map_err(|_| Error::Internal {
                what,
                reason: "a worker thread panicked".into(),
            })?);
        }
        Ok(out)
    })
}
