//! age files opened as restores read them: `Payload::open` with the fixed identity, then
//! `chunks_for` and `decrypt_in_place` over ranges at edge offsets; anything decrypted must
//! equal what age's own `SeekableReader` reads.
#![no_main]

use cairn_format::envelope::SeekableReader;
use cairn_format::payload::Payload;
use cairn_format_fuzz::identity;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let id = identity();
    let Ok(payload) = Payload::open(&mut Cursor::new(data), data.len() as u64, &[id]) else {
        return;
    };
    let len = payload.len();
    assert!(len <= data.len() as u64);
    let mut age = SeekableReader::open(Cursor::new(data), &[id]).ok();
    for (start, n) in [
        (0, 0),
        (0, 1),
        (65_535, 2),
        (len / 2, 100),
        (len.saturating_sub(1), 1),
        (len, 0),
        (len, 1),
        (0, len),
    ] {
        let Some(chunks) = payload.chunks_for(start..start.saturating_add(n)) else {
            assert!(start + n > len, "a range within the plaintext has chunks");
            continue;
        };
        assert!(chunks.stored.end <= data.len() as u64 && chunks.stored.start <= chunks.stored.end);
        let mut buf = data[chunks.stored.start as usize..chunks.stored.end as usize].to_vec();
        if let Ok(plain) = payload.decrypt_in_place(&mut buf, chunks.first) {
            assert!(chunks.skip as u64 + n <= plain as u64);
            let ours = &buf[chunks.skip..chunks.skip + n as usize];
            if let Some(theirs) = age.as_mut().and_then(|r| r.read_at(start, n as usize).ok()) {
                assert_eq!(ours, &theirs[..], "payload and age disagree");
            }
        }
    }
});
