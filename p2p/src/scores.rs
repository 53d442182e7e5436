//! Peer scores and bans. A peer starts at 0; a wrong block costs much, an over-limit request a
//! little; scores recover slowly with good behaviour over time. A peer whose score falls to the
//! ban threshold is banned for a period: disconnected, and refused at connection time until the
//! ban ends. Operators can ban by hand too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p_identity::PeerId;

/// What a peer did wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// Sent a block whose hash does not match its CID.
    BadBlock,
    /// Asked for more than its rate limit allows.
    OverLimit,
    /// Sent a request the protocol forbids (malformed, too many CIDs).
    Malformed,
    /// Claimed a pinned root but could not prove it holds a block of it. An honest node whose
    /// disk lost data does this too, so it costs less than a wrong block: a lost copy is
    /// repaired, a peer that keeps claiming what it cannot prove is banned in the end.
    FailedAudit,
    /// Sent a pin record that the authority rule refuses (a signer speaking for a pin it does not
    /// own, a factor over the cap, a version from the future): a member trying to take over
    /// pins it has no say in.
    UnauthorisedRecord,
}

impl Offence {
    fn cost(self) -> i64 {
        match self {
            Self::BadBlock => 50,
            Self::OverLimit => 1,
            Self::Malformed => 20,
            Self::FailedAudit => 10,
            Self::UnauthorisedRecord => 25,
        }
    }
}

/// Scores recover by this many points per minute, up to 0.
const RECOVERY_PER_MINUTE: i64 = 10;
/// Scores and bans are kept for at most this many peers; the least recently seen are dropped.
pub const MAX_TRACKED_PEERS: usize = 4096;

#[derive(Debug)]
struct Entry {
    score: i64,
    updated: Instant,
}

#[derive(Debug)]
pub struct Scores {
    ban_score: i64,
    ban_duration: Duration,
    entries: HashMap<PeerId, Entry>,
    bans: HashMap<PeerId, Instant>,
}

impl Scores {
    pub fn new(ban_score: i64, ban_duration: Duration) -> Self {
        Self {
            ban_score,
            ban_duration,
            entries: HashMap::new(),
            bans: HashMap::new(),
        }
    }

    /// Records an offence; returns the ban's end when it tips the peer into a ban.
    pub fn offend(&mut self, peer: PeerId, offence: Offence, now: Instant) -> Option<Instant> {
        if self.bans.contains_key(&peer) {
            return None;
        }
        if self.entries.len() >= MAX_TRACKED_PEERS && !self.entries.contains_key(&peer) {
            self.forget_oldest();
        }
        let entry = self.entries.entry(peer).or_insert(Entry {
            score: 0,
            updated: now,
        });
        entry.score = recovered(entry.score, entry.updated, now) - offence.cost();
        entry.updated = now;
        (entry.score <= self.ban_score).then(|| self.ban(peer, self.ban_duration, now))
    }

    /// Bans a peer until `now + duration`; returns the end.
    pub fn ban(&mut self, peer: PeerId, duration: Duration, now: Instant) -> Instant {
        let until = now + duration;
        self.bans.insert(peer, until);
        self.entries.remove(&peer);
        until
    }

    #[cfg(test)]
    pub fn score(&self, peer: &PeerId, now: Instant) -> i64 {
        self.entries
            .get(peer)
            .map_or(0, |e| recovered(e.score, e.updated, now))
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.bans.contains_key(peer)
    }

    /// Ends the bans that are over; returns the peers to admit again.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let over: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &over {
            self.bans.remove(peer);
        }
        over
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.updated)
            .map(|(peer, _)| *peer)
        {
            self.entries.remove(&oldest);
        }
    }
}

fn recovered(score: i64, since: Instant, now: Instant) -> i64 {
    let minutes = now.saturating_duration_since(since).as_secs() / 60;
    let gain = RECOVERY_PER_MINUTE.saturating_mul(i64::try_from(minutes).unwrap_or(i64::MAX));
    score.saturating_add(gain).min(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_bad_blocks_ban_a_peer() {
        let mut scores = Scores::new(-100, Duration::from_secs(60));
        let (peer, now) = (PeerId::random(), Instant::now());
        assert_eq!(scores.offend(peer, Offence::BadBlock, now), None);
        assert_eq!(scores.score(&peer, now), -50);
        let until = scores.offend(peer, Offence::BadBlock, now).unwrap();
        assert_eq!(until, now + Duration::from_secs(60));
        assert!(scores.is_banned(&peer));
        assert!(scores.expire(now + Duration::from_secs(59)).is_empty());
        assert_eq!(scores.expire(now + Duration::from_secs(60)), vec![peer]);
        assert!(!scores.is_banned(&peer));
    }

    #[test]
    fn a_sustained_flood_bans_but_an_occasional_slip_recovers() {
        let mut scores = Scores::new(-100, Duration::from_secs(60));
        let (flooder, slip, now) = (PeerId::random(), PeerId::random(), Instant::now());
        let banned_after = (1..=200)
            .find(|_| scores.offend(flooder, Offence::OverLimit, now).is_some())
            .unwrap();
        assert_eq!(banned_after, 100);
        // 50 over-limit requests, spread over ten minutes, never add up to a ban.
        for minute in 0..10u64 {
            for _ in 0..5 {
                let at = now + Duration::from_secs(minute * 60);
                assert_eq!(scores.offend(slip, Offence::OverLimit, at), None);
            }
        }
        assert!(scores.score(&slip, now + Duration::from_secs(600)) > -10);
    }

    #[test]
    fn the_table_of_scores_is_bounded() {
        let mut scores = Scores::new(-100, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..MAX_TRACKED_PEERS + 10 {
            scores.offend(PeerId::random(), Offence::OverLimit, now);
        }
        assert!(scores.entries.len() <= MAX_TRACKED_PEERS);
    }
}
