//! `IndexRecord::decode`: never panics; accepted records round-trip and every entry fits.
#![no_main]

use cairn_format::index::IndexRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = IndexRecord::decode(data) {
        assert_eq!(
            IndexRecord::decode(&rec.encode()).expect("re-encoded index"),
            rec
        );
        for p in &rec.packs {
            for b in &p.blobs {
                assert!(b.frame.offset + u64::from(b.frame.stored_len) <= p.size);
            }
        }
    }
});
