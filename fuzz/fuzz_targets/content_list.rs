//! `ContentList::decode`: never panics; accepted lists round-trip, their runs add up to their
//! length, and resolving against any base never panics and yields exactly that length.
//! `ContentList::decode_owned` says exactly what `decode` says.
#![no_main]

use cairn_format::content_list::{ContentList, Op};
use cairn_format::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        format!("{:?}", ContentList::decode(data)),
        format!("{:?}", ContentList::decode_owned(data.to_vec()))
    );
    if let Ok(list) = ContentList::decode(data) {
        assert_eq!(list.ops.iter().map(Op::count).sum::<u64>(), list.len);
        assert_eq!(
            ContentList::decode(&list.encode()).expect("re-encoded list"),
            list
        );
        let base = [Id([1; 32]); 64];
        for b in [None, Some(&base[..])] {
            if let Ok(ids) = list.resolve(b) {
                assert_eq!(ids.len() as u64, list.len);
            }
        }
    }
});
