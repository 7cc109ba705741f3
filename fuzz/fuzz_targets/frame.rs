//! `frame::decompress` and `frame::decompress_prefix`. Input: raw_len (u32 LE, capped just
//! above MAX_FRAME_LEN so the size check is exercised without multi-GiB requests), one byte
//! choosing the compression (low bit: 0 none, 1 zstd; the other bits: how much of raw_len a
//! prefix read asks for, in 127ths), then the stored bytes. A prefix read must agree with the
//! whole read where both succeed. Also compresses the stored bytes and checks the round trip,
//! whole and by prefix.
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
    let upto = (u64::from(raw_len) * u64::from(data[4] >> 1) / 127) as u32;
    let stored = &data[5..];
    let whole = frame::decompress(stored, compression, raw_len);
    if let Ok(raw) = &whole {
        assert_eq!(raw.len(), raw_len as usize);
        if compression == Compression::None {
            assert_eq!(raw, stored);
        }
    }
    let mut out = Vec::new();
    if let Ok(prefix) = frame::decompress_prefix(stored, compression, raw_len, upto, &mut out) {
        assert_eq!(prefix.len(), upto.min(raw_len) as usize);
        if let Ok(raw) = &whole {
            assert_eq!(prefix, &raw[..prefix.len()]);
        }
    }

    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let (how, bytes) = c.compress(stored);
        let back = frame::decompress(&bytes, how, stored.len() as u32).expect("own frame");
        assert_eq!(back, stored);
        let half = stored.len() as u32 / 2;
        let mut out = Vec::new();
        let prefix = frame::decompress_prefix(&bytes, how, stored.len() as u32, half, &mut out)
            .expect("own frame");
        assert_eq!(prefix, &stored[..half as usize]);
    });
});
