//! The one bounded table of things waiting on the swarm task: outbound requests and lookups
//! waiting for their answer (keyed by request or query id), and inbound requests waiting for the
//! node's. Full means full: the caller is told at once instead of the table growing, so nothing a
//! peer or a busy node does can make the loop's memory grow without bound.

use std::collections::HashMap;
use std::hash::Hash;

use super::Replier;
use crate::error::Error;

pub(crate) struct Pending<K, V> {
    entries: HashMap<K, V>,
    capacity: usize,
}

impl<K: Eq + Hash, V> Pending<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// `reply` back when another entry fits; otherwise `reply` is sent `refusal()` at once and
    /// the caller has nothing to send.
    pub(crate) fn refuse_when_full<T>(
        &self,
        reply: Replier<T>,
        refusal: impl FnOnce() -> Error,
    ) -> Option<Replier<T>> {
        if self.is_full() {
            let _ = reply.send(Err(refusal()));
            return None;
        }
        Some(reply)
    }

    /// Adds an entry; false when the table was full and `value` was dropped (callers check
    /// `is_full` or `refuse_when_full` first, so this is only the backstop: a dropped reply tells
    /// its waiter the request failed).
    pub(crate) fn insert(&mut self, key: K, value: V) -> bool {
        if self.is_full() {
            return false;
        }
        self.entries.insert(key, value);
        true
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key)
    }

    /// Removes every entry `gone` says nobody waits for any more, and returns their keys.
    pub(crate) fn remove_where(&mut self, gone: impl Fn(&V) -> bool) -> Vec<K>
    where
        K: Clone,
    {
        let keys: Vec<K> = self
            .entries
            .iter()
            .filter(|(_, v)| gone(v))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            self.entries.remove(key);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_table_refuses_at_once_and_takes_nothing_more() {
        let mut pending: Pending<u32, Replier<()>> = Pending::new(1);
        let (first, _first_rx) = tokio::sync::oneshot::channel();
        let first = pending
            .refuse_when_full(first, || Error::Stopped)
            .expect("room for one");
        assert!(pending.insert(1, first));
        assert!(pending.is_full());

        let (second, second_rx) = tokio::sync::oneshot::channel::<Result<(), Error>>();
        assert!(
            pending
                .refuse_when_full(second, || Error::Stopped)
                .is_none()
        );
        assert!(matches!(second_rx.await, Ok(Err(Error::Stopped))));

        let (third, _third_rx) = tokio::sync::oneshot::channel();
        assert!(!pending.insert(3, third), "the backstop let one in");
        assert!(pending.remove(&1).is_some());
        assert!(!pending.is_full());
    }

    #[tokio::test]
    async fn entries_nobody_waits_for_are_swept() {
        let mut pending: Pending<u32, Replier<()>> = Pending::new(4);
        let (kept, _kept_rx) = tokio::sync::oneshot::channel();
        let (abandoned, abandoned_rx) = tokio::sync::oneshot::channel();
        pending.insert(1, kept);
        pending.insert(2, abandoned);
        drop(abandoned_rx);
        assert_eq!(pending.remove_where(|reply| reply.is_closed()), vec![2]);
        assert!(pending.get_mut(&2).is_none());
        assert!(pending.get_mut(&1).is_some());
    }
}
