//! `bbolt::inspect_bytes`: never panics and never loops on any bytes claiming to be an etcd
//! snapshot; accepted databases report a size within the input. The stream inspector never
//! panics either, and says the same whether it holds every page's summary or hands those after
//! the first few pages to a store of records.
#![no_main]

use cairn_format::bbolt::StreamInspector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = cairn_format::bbolt::inspect_bytes(data) {
        assert!(status.total_size <= data.len() as u64);
    }
    let bound = data.first().map_or(0, |b| u64::from(b % 8));
    let mut held = StreamInspector::new();
    let mut stored = StreamInspector::with_store(Vec::<u8>::new(), bound);
    for piece in data.chunks(4096) {
        held.update(piece);
        stored.update(piece);
    }
    let (a, b) = (held.finish(), stored.finish());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
});
