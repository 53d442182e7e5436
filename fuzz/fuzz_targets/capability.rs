//! Capability strings (`cairn-cap1:…`, from `add --encrypt`) as a user pastes them: parsing refuses
//! anything malformed, and what it accepts prints back to the same capability.
#![no_main]

use cairn_node::encrypt::Capability;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(capability) = text.parse::<Capability>() {
        let printed = capability.to_string();
        let again: Capability = printed.parse().expect("a printed capability parses");
        assert_eq!(again, capability);
    }
});
