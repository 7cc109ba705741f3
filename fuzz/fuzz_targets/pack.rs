//! Pack plaintext parsing: `parse_pack`, `read_blob` on every entry, and the two-step
//! `trailer_range` + `decode_trailer` path used when reading a pack piecewise.
#![no_main]

use cairn_format::pack::{self, FOOTER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = pack::parse_pack(data);
    if let Ok(trailer) = &parsed {
        for entry in &trailer.blobs {
            if let Ok(blob) = pack::read_blob(data, entry) {
                assert_eq!(blob.len(), entry.len as usize);
            }
            // The piecewise reader: fetch the frame's stored bytes, then cut the blob out.
            let f = entry.frame;
            let stored = &data[f.offset as usize..(f.offset + u64::from(f.stored_len)) as usize];
            let _ = pack::blob_from_frame(stored, entry);
        }
    }

    let n = data.len();
    if n >= FOOTER_LEN {
        let two_step = pack::trailer_range(&data[n - FOOTER_LEN..], n as u64).and_then(|r| {
            assert!(r.start <= r.end && r.end + FOOTER_LEN as u64 == n as u64);
            pack::decode_trailer(&data[r.start as usize..r.end as usize], r.start)
        });
        match (&parsed, &two_step) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("parse_pack and trailer_range+decode_trailer disagree"),
        }
    }
    // Footer bytes taken from the start, with a plaintext length claimed by the input.
    if n >= FOOTER_LEN + 8 {
        let claimed = u64::from_le_bytes(data[FOOTER_LEN..FOOTER_LEN + 8].try_into().unwrap());
        if let Ok(r) = pack::trailer_range(&data[..FOOTER_LEN], claimed) {
            assert!(r.start <= r.end && r.end <= claimed);
        }
    }
});
