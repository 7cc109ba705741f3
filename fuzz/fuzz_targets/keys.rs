//! `KeyRecord::decode`, `keys::write_key_from_text` and `keys::write_key_label` (input as
//! lossy UTF-8): never panic; accepted values round-trip.
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
        let text = keys::write_key_to_text(&rec, Some("host-1"));
        let back = keys::write_key_from_text(&text).expect("own write key text");
        assert_eq!(back, rec.to_write_key());
        assert_eq!(
            keys::write_key_label(&text).expect("own label").as_deref(),
            Some("host-1")
        );
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(rec) = keys::write_key_from_text(&text) {
        assert!(rec.master_identity.is_none());
    }
    if let Ok(Some(label)) = keys::write_key_label(&text) {
        assert!(keys::valid_label(&label));
    }
    let _ = envelope::parse_identity(&text);
    let _ = envelope::parse_recipient(&text);
});
