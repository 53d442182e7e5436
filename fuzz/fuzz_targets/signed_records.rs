//! Signed pin records, pin claims and receipts as a peer or the DHT hands them over: verification
//! must refuse garbage without panicking, and whatever it accepts must be internally consistent
//! (the signer named in the body is the key that signed; claims hold only records the authority
//! rule admits, one per owner, and survive their own encoding).
#![no_main]

use std::sync::LazyLock;

use cairn_p2p::authority::{Authority, RecordGate};
use cairn_p2p::claims::PinClaims;
use cairn_p2p::records::{PinRecord, Receipt};
use cairn_p2p::PeerId;
use cid::Cid;
use libfuzzer_sys::fuzz_target;

static GATE: LazyLock<RecordGate> = LazyLock::new(|| {
    let authority = Authority {
        local: PeerId::random(),
        allowlist: Default::default(),
        operators: Default::default(),
        max_factor: 5,
    };
    RecordGate::new(authority, &mut prometheus_client::registry::Registry::default())
});

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = PinRecord::verify(data) {
        assert!(!record.supersedes(&record), "a record supersedes itself");
    }
    let _ = Receipt::verify(data);
    let root = Cid::default();
    if let Ok(opened) = PinClaims::open(data, root, &GATE, None) {
        let claims = opened.claims;
        for record in claims.records() {
            assert_eq!(record.root, root);
            assert!(GATE.authority().check(record).is_ok());
        }
        let again = PinClaims::open(&claims.encode(), root, &GATE, None).unwrap();
        assert!(again.refused.is_empty());
        assert_eq!(again.claims, claims);
    }
});
