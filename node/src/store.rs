//! The node's block store as its async code uses it: the store itself (any engine: RocksDB in a
//! daemon, memory in unit tests) and the one way to call it without blocking the runtime. Every
//! call runs as a tracked blocking task, so the node's `join` waits for it before the store is
//! flushed, and a panic in it is reported as an internal error, never as bad input.

use std::sync::Arc;

use cairn_blockstore::{RocksBackend, Store, backend::Backend};

use crate::error::Result;
use crate::tasks::Jobs;

/// A shared store and the node's jobs. Cheap to clone.
#[derive(Debug)]
pub struct NodeStore<B: Backend = RocksBackend> {
    store: Arc<Store<B>>,
    jobs: Jobs,
}

impl<B: Backend> Clone for NodeStore<B> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            jobs: self.jobs.clone(),
        }
    }
}

impl<B: Backend> NodeStore<B> {
    pub fn new(store: Arc<Store<B>>, jobs: Jobs) -> Self {
        Self { store, jobs }
    }

    /// The store, for synchronous callers already on a blocking thread.
    pub fn store(&self) -> &Arc<Store<B>> {
        &self.store
    }

    /// The jobs this store's callers run under.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Runs `f` against the store on a blocking thread; `what` names the step in an internal
    /// error.
    pub async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Store<B>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = Arc::clone(&self.store);
        self.jobs.blocking(what, move || f(&store)).await
    }
}
