//! `frame::decompress`. Input: raw_len (u32 LE, capped just above MAX_FRAME_LEN so the size
//! check is exercised without multi-GiB requests), one byte choosing the compression (low bit:
//! 0 none, 1 zstd), then the stored bytes. Also compresses the stored bytes and checks the
//! round trip.
#![no_main]

use cairn_format::frame::{self, Compression, FrameCompressor};
use cairn_format::MAX_FRAME_LEN;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static COMPRESSOR: RefCell<FrameCompressor> =
        RefCell::new(FrameCompressor::new(3).expect("zstd context"));
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let raw_len = u32::from_le_bytes(data[..4].try_into().unwrap()).min(MAX_FRAME_LEN + 1);
    let compression = if data[4] & 1 == 0 {
        Compression::None
    } else {
        Compression::Zstd
    };
    let stored = &data[5..];
    if let Ok(raw) = frame::decompress(stored, compression, raw_len) {
        assert_eq!(raw.len(), raw_len as usize);
        if compression == Compression::None {
            assert_eq!(raw, stored);
        }
    }

    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let (how, bytes) = c.compress(stored);
        let back = frame::decompress(&bytes, how, stored.len() as u32).expect("own frame");
        assert_eq!(back, stored);
    });
});
