//! `Snapshot::decode`: never panics; accepted snapshots round-trip.
#![no_main]

use cairn_format::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Snapshot::decode(data) {
        assert_eq!(
            Snapshot::decode(&s.encode()).expect("re-encoded snapshot"),
            s
        );
    }
});
