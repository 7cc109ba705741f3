//! `ChunkIdKey::ids` against `ChunkIdKey::id`: the side-by-side hashing of equal pages must give
//! every blob's own id, in order. Input: a key byte, then blob lengths up to a 0 byte (an odd
//! byte: that many bytes; an even one: a page of 1–32 KiB), then the bytes the blobs are cut
//! from (repeated to cover the lengths).
#![no_main]

use cairn_format::ChunkIdKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&key, rest)) = data.split_first() else {
        return;
    };
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let (lens, bytes) = rest.split_at(end);
    if bytes.len() < 2 {
        return;
    }
    // Odd bytes: that many bytes; even ones: a page of 1 KiB << (b/2 % 6).
    let lens: Vec<usize> = lens
        .iter()
        .take(64)
        .map(|&b| if b % 2 == 1 { usize::from(b) } else { 1024 << (b / 2 % 6) })
        .collect();
    let total: usize = lens.iter().sum();
    let source: Vec<u8> = bytes.iter().copied().cycle().take(total).collect();
    let mut blobs = Vec::with_capacity(lens.len());
    let mut at = 0;
    for len in lens {
        blobs.push(&source[at..at + len]);
        at += len;
    }
    let key = ChunkIdKey([key; 32]);
    let mut ids = Vec::new();
    key.ids(blobs.iter().copied(), &mut ids);
    let each: Vec<_> = blobs.iter().map(|b| key.id(b)).collect();
    assert_eq!(ids, each);
});
