//! age envelopes opened with a fixed identity: `envelope::decrypt` (small max_len),
//! `decrypt_with_passphrase` (tiny work factor), and `SeekableReader` reads at edge offsets.
#![no_main]

use cairn_format::envelope::{self, SeekableReader};
use cairn_format_fuzz::{identity, FUZZ_PASSPHRASE};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

const MAX_LEN: u64 = 1 << 17;

fuzz_target!(|data: &[u8]| {
    let id = identity();
    if let Ok(plain) = envelope::decrypt(data, &[id], MAX_LEN) {
        assert!(plain.len() as u64 <= MAX_LEN);
    }
    if let Ok(true) = envelope::is_passphrase_encrypted(data) {
        let _ = envelope::decrypt_with_passphrase(data, FUZZ_PASSPHRASE, 4, MAX_LEN);
    }

    let Ok(mut reader) = SeekableReader::open(Cursor::new(data), &[id]) else {
        return;
    };
    let len = reader.plaintext_len().ok();
    let mut offsets = vec![0u64, 1, 65535, 65536, 65537, 1 << 20];
    if let Some(len) = len {
        assert!(len <= data.len() as u64);
        offsets.extend([len / 2, len.saturating_sub(1), len, len + 1]);
    }
    for offset in offsets {
        for n in [0usize, 1, 100, 70_000] {
            // Offsets past the end are deliberate: the store passes frame offsets from the
            // index, which are only checked against the ciphertext size.
            if let Ok(buf) = reader.read_at(offset, n) {
                assert_eq!(buf.len(), n);
                // (A zero-length read succeeds at any offset, even past the end.)
                if let (Some(len), true) = (len, n > 0) {
                    assert!(offset + n as u64 <= len, "read past the end succeeded");
                }
            }
        }
    }
});
