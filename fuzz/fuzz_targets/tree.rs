//! `Tree::decode`: never panics; accepted trees have safe, strictly sorted names, round-trip,
//! and every entry is found by `get`.
#![no_main]

use cairn_format::tree::{valid_name, Tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        for w in tree.nodes.windows(2) {
            assert!(w[0].name < w[1].name);
        }
        for n in &tree.nodes {
            assert!(valid_name(&n.name));
            assert_eq!(tree.get(&n.name), Some(n));
        }
        let mut copy = tree.clone();
        assert_eq!(Tree::decode(&copy.encode()).expect("re-encoded tree"), tree);
    }
});
