//! Config files (with their multiaddrs, peer IDs, sizes and durations) as an operator may write
//! them: parsing and validation refuse bad input with an error; an accepted config survives a
//! round trip through TOML unchanged.
#![no_main]

use std::path::Path;

use cairn_config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("fuzz.toml");
    let Ok(config) = Config::from_toml(text, origin) else {
        return;
    };
    let written = config.to_toml().expect("an accepted config serialises");
    let again = Config::from_toml(&written, origin).expect("what we wrote parses");
    assert_eq!(again, config, "the TOML round trip changed the config");
    let _ = config.validate();
    // The same text as a single address or CID, as the CLI and config read them.
    let _ = text.parse::<cairn_p2p::Multiaddr>();
    let _ = text.parse::<cid::Cid>();
});
