//! `LeaseRecord::decode` and `GcRecord::decode`: never panic; accepted records round-trip.
#![no_main]

use cairn_format::gc::{GcRecord, LeaseRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = LeaseRecord::decode(data) {
        assert_eq!(
            LeaseRecord::decode(&l.encode()).expect("re-encoded lease"),
            l
        );
    }
    if let Ok(g) = GcRecord::decode(data) {
        assert_eq!(GcRecord::decode(&g.encode()).expect("re-encoded gc"), g);
        for p in &g.packs {
            for b in &p.blobs {
                assert!(b.frame.offset + u64::from(b.frame.stored_len) <= p.size);
            }
        }
    }
});
