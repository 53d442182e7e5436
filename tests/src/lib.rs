//! Shared helpers for Cairn's integration tests (the tests themselves are in `tests/`). Multi-node
//! harnesses land here as the daemon and the P2P layer do.

/// Deterministic test content: byte `i` is `i % 251`, as `shared/vectors/make_fixtures.py` writes,
/// so inputs can be regenerated instead of committed.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
