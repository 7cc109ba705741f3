//! `RepoConfig::decode`: never panics; an accepted config re-encodes identically and its
//! chunker parameters are usable by the chunker.
#![no_main]

use cairn_format::chunker::{ChunkPolicy, Chunker};
use cairn_format::config::RepoConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = RepoConfig::decode(data) {
        assert_eq!(
            RepoConfig::decode(&cfg.encode()).expect("re-encoded config"),
            cfg
        );
        // A config that validates must give a working chunker (FastCDC asserts its ranges
        // in debug builds, which cargo fuzz uses by default).
        let input = [0x5au8; 2048];
        let policy = ChunkPolicy::Cdc {
            params: cfg.chunker,
            seed: 1,
        };
        let total: usize = Chunker::new(&input[..], policy)
            .map(|c| c.expect("reading a slice").len())
            .sum();
        assert_eq!(total, input.len());
    }
});
