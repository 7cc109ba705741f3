//! `bbolt::inspect_bytes`: never panics and never loops on any bytes claiming to be an etcd
//! snapshot; accepted databases report a size within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(status) = cairn_format::bbolt::inspect_bytes(data) {
        assert!(status.total_size <= data.len() as u64);
    }
});
