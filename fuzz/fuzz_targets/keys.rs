//! `KeyRecord::decode` and `keys::write_key_from_text` (input as lossy UTF-8): never panic;
//! accepted values round-trip.
#![no_main]

use cairn_format::envelope;
use cairn_format::keys::{self, KeyRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = KeyRecord::decode(data) {
        assert_eq!(
            KeyRecord::decode(&rec.encode()).expect("re-encoded keys"),
            rec
        );
        let text = keys::write_key_to_text(&rec);
        let back = keys::write_key_from_text(&text).expect("own write key text");
        assert_eq!(back, rec.to_write_key());
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(rec) = keys::write_key_from_text(&text) {
        assert!(rec.master_identity.is_none());
    }
    let _ = envelope::parse_identity(&text);
    let _ = envelope::parse_recipient(&text);
});
