//! `chunker::Chunker` with small parameters over the input, read in uneven pieces: chunks
//! reassemble to the input, respect the size bounds, and do not depend on read sizes.
//!
//! Input: byte 0 selects the policy (bit 0: fixed, else CDC; bits 1..: parameter set), byte 1
//! the fixed size in units of 16 (0 is clamped to 64 by the chunker), byte 2 the largest read
//! the reader returns, bytes 3..10 the seed; the rest is the content.
#![no_main]

use cairn_format::chunker::{ChunkPolicy, Chunker};
use cairn_format_fuzz::SMALL_PARAMS;
use libfuzzer_sys::fuzz_target;
use std::io::{self, Read};

/// A reader returning at most `step` bytes per call.
struct Uneven<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Uneven<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn chunks<R: Read>(reader: R, policy: ChunkPolicy) -> Vec<Vec<u8>> {
    Chunker::new(reader, policy)
        .map(|c| c.expect("in-memory reader does not fail"))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let content = &data[10..];
    let seed = u64::from_le_bytes(data[2..10].try_into().unwrap()) >> 8;
    let step = usize::from(data[2]).max(1);
    let (policy, min, max) = if data[0] & 1 == 1 {
        let size = u32::from(data[1]) * 16;
        let eff = size.clamp(64, cairn_format::MAX_BLOB_LEN) as usize;
        (ChunkPolicy::Fixed(size), eff, eff)
    } else {
        let params = SMALL_PARAMS[usize::from(data[0] >> 1) % SMALL_PARAMS.len()];
        params.validate().expect("small params are valid");
        (
            ChunkPolicy::Cdc { params, seed },
            params.min as usize,
            params.max as usize,
        )
    };

    let whole = chunks(content, policy);
    assert_eq!(whole.concat(), content);
    if let Some((last, rest)) = whole.split_last() {
        assert!(!last.is_empty() && last.len() <= max);
        for c in rest {
            assert!(
                c.len() >= min && c.len() <= max,
                "chunk of {} bytes",
                c.len()
            );
        }
    }
    let uneven = chunks(
        Uneven {
            data: content,
            step,
        },
        policy,
    );
    assert_eq!(uneven, whole, "boundaries depend on read sizes");
});
