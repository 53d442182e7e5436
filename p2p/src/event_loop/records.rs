//! Pin records in the DHT. Kademlia hands every record a peer offers to us first
//! (`StoreInserts::FilterBoth`); one is kept only when it is a well-formed pin record, signed by
//! an admitted peer, stored under its own root's key and newer than the record held. Lookups
//! gather every copy the DHT returns and keep the newest valid one, so a stale or forged copy at
//! one peer cannot win.

use cid::Cid;
use libp2p::kad::{self, QueryId, store::RecordStore};
use libp2p_identity::PeerId;

use super::{EventLoop, Replier};
use crate::client::NetworkEvent;
use crate::error::Error;
use crate::records::PinRecord;
use crate::scores::Offence;

/// A pin-record lookup under way: the newest valid record seen so far, and who waits for it.
pub(super) struct PendingLookup {
    best: Option<(PinRecord, Vec<u8>)>,
    reply: Replier<Option<Vec<u8>>>,
}

/// The DHT key of `root`'s pin record.
pub(crate) fn pin_record_key(root: &Cid) -> kad::RecordKey {
    let mut key = b"/cairn/pin/".to_vec();
    key.extend_from_slice(&root.to_bytes());
    kad::RecordKey::new(&key)
}

impl EventLoop {
    /// Checks a record a peer offers or a lookup returns; the verified record on success.
    fn check_record(&self, record: &kad::Record) -> Result<PinRecord, Error> {
        let verified = PinRecord::verify(&record.value)?;
        if pin_record_key(&verified.root) != record.key {
            return Err(Error::BadRecord("stored under another root's key".into()));
        }
        let admitted = self.settings.allowlist.is_empty()
            || self.settings.allowlist.contains(&verified.signer)
            || verified.signer == *self.swarm.local_peer_id();
        if !admitted {
            return Err(Error::BadRecord(format!(
                "signed by {}, which is not on the allowlist",
                verified.signer
            )));
        }
        Ok(verified)
    }

    /// The record this node holds for `key`, if any (records in the store were checked on the
    /// way in).
    fn held_record(&mut self, key: &kad::RecordKey) -> Option<PinRecord> {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let held = store.get(key)?;
        PinRecord::verify(&held.value).ok()
    }

    fn keep_record(&mut self, key: kad::RecordKey, value: Vec<u8>) {
        let record = kad::Record::new(key, value);
        if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
            tracing::warn!(error = %e, "pin record not kept (record store full?)");
        }
    }

    /// A peer offers a record (a PUT, or Kademlia's own re-replication).
    pub(super) fn on_record_offered(&mut self, source: PeerId, record: kad::Record) {
        let verified = match self.check_record(&record) {
            Ok(verified) => verified,
            Err(e) => {
                tracing::debug!(peer = %source, error = %e, "refused a pin record");
                self.penalise(source, Offence::Malformed);
                return;
            }
        };
        if let Some(held) = self.held_record(&record.key)
            && !verified.supersedes(&held)
        {
            return; // the same or an older record: nothing to do
        }
        self.keep_record(record.key, record.value.clone());
        // The node acts on it (an unpin); when it is behind, its periodic reconciliation reads
        // the record from the store instead.
        let _ = self.events.try_send(NetworkEvent::PinRecord {
            record: record.value,
        });
    }

    /// Stores our own signed record here and at the peers closest to its key.
    pub(super) fn put_pin_record(&mut self, value: Vec<u8>) -> Result<(), Error> {
        let verified = PinRecord::verify(&value)?;
        let key = pin_record_key(&verified.root);
        if let Some(held) = self.held_record(&key)
            && !verified.supersedes(&held)
            && held != verified
        {
            return Err(Error::BadRecord(format!(
                "a newer record (version {}) is held for {}",
                held.version, verified.root
            )));
        }
        let record = kad::Record::new(key, value);
        self.swarm
            .behaviour_mut()
            .kad
            .put_record(record, kad::Quorum::One)
            .map(|_| ())
            .map_err(|e| Error::Lookup(format!("storing the pin record failed: {e}")))
    }

    pub(super) fn get_pin_record(&mut self, root: Cid, reply: Replier<Option<Vec<u8>>>) {
        let Some(reply) = self
            .pending_records
            .refuse_when_full(reply, || Error::Lookup("too many lookups in flight".into()))
        else {
            return;
        };
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_record(pin_record_key(&root));
        self.pending_records
            .insert(id, PendingLookup { best: None, reply });
    }

    pub(super) fn on_record_found(
        &mut self,
        id: QueryId,
        result: Result<kad::GetRecordOk, kad::GetRecordError>,
        last: bool,
    ) {
        let finished = match result {
            Ok(kad::GetRecordOk::FoundRecord(found)) => {
                match self.check_record(&found.record) {
                    Ok(verified) => {
                        if let Some(pending) = self.pending_records.get_mut(&id) {
                            let newer = pending
                                .best
                                .as_ref()
                                .is_none_or(|(best, _)| verified.supersedes(best));
                            if newer {
                                pending.best = Some((verified, found.record.value));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(peer = ?found.peer, error = %e, "a lookup returned a bad pin record");
                        if let Some(peer) = found.peer {
                            self.penalise(peer, Offence::Malformed);
                        }
                    }
                }
                last
            }
            Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) => true,
            Err(e) => {
                tracing::debug!(error = %e, "pin record lookup ended");
                true
            }
        };
        if !finished {
            return;
        }
        let Some(pending) = self.pending_records.remove(&id) else {
            return;
        };
        // Keep the newest copy here too, so this node answers with it from now on.
        if let Some((best, value)) = &pending.best {
            let key = pin_record_key(&best.root);
            let stale = self
                .held_record(&key)
                .is_none_or(|held| best.supersedes(&held));
            if stale {
                self.keep_record(key, value.clone());
            }
        }
        let _ = pending.reply.send(Ok(pending.best.map(|(_, value)| value)));
    }
}
