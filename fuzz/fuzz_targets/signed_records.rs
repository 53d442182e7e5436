//! Signed pin records and receipts as a peer or the DHT hands them over: verification must refuse
//! garbage without panicking, and whatever it accepts must be internally consistent (the signer
//! named in the body is the key that signed).
#![no_main]

use cairn_p2p::records::{PinRecord, Receipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = PinRecord::verify(data) {
        assert!(!record.supersedes(&record), "a record supersedes itself");
    }
    let _ = Receipt::verify(data);
});
