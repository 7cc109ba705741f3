//! Keyed BLAKE3 of many equal-sized blobs side by side.
//!
//! `blake3::keyed_hash` of one 4 KiB page compresses its four chunks in parallel, which fills
//! four of the sixteen AVX-512 lanes. Here the chunks of up to sixteen pages go through the
//! crate's own SIMD kernel (`blake3::platform::Platform::hash_many`) together, and the
//! parent nodes of their trees likewise: the same hashes, about twice as fast. Only blobs
//! whose length is a power-of-two number of whole chunks take this path (their trees are
//! perfect: every parent has two full children); any other blob is hashed by `keyed_hash`.
//!
//! `platform` is the crate's hidden benchmarking interface, so `blake3` is pinned to one
//! version, and the tests compare every kernel this CPU has against `keyed_hash`.

use super::Id;
use blake3::platform::Platform;
use blake3::IncrementCounter;
use std::sync::OnceLock;

/// Bytes per BLAKE3 chunk.
const CHUNK: usize = 1024;
/// Blobs hashed side by side: the widest kernel's lanes.
pub(super) const LANES: usize = 16;
/// The most chunks per blob this path takes (64 KiB, the largest bbolt page size in use).
const MAX_CHUNKS: usize = 64;

// Domain flags of the BLAKE3 specification, section 2.1.
const CHUNK_START: u8 = 1 << 0;
const CHUNK_END: u8 = 1 << 1;
const PARENT: u8 = 1 << 2;
const ROOT: u8 = 1 << 3;
const KEYED_HASH: u8 = 1 << 4;

/// The best kernel of this CPU, detected once.
fn platform() -> Platform {
    static DETECTED: OnceLock<Platform> = OnceLock::new();
    *DETECTED.get_or_init(Platform::detect)
}

/// Whether blobs of `len` bytes can be hashed side by side.
pub(super) fn fits(len: usize) -> bool {
    let chunks = len / CHUNK;
    len.is_multiple_of(CHUNK) && (2..=MAX_CHUNKS).contains(&chunks) && chunks.is_power_of_two()
}

/// The key as the little-endian words BLAKE3 works in.
pub(super) fn key_words(key: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|i| u32::from_le_bytes(key[4 * i..4 * i + 4].try_into().expect("4 bytes")))
}

/// Keyed hashes of `blobs` (at most [`LANES`], all of one length that [`fits`]), appended to
/// `out`.
pub(super) fn hash(key: &[u32; 8], blobs: &[&[u8]], out: &mut Vec<Id>) {
    hash_with(platform(), key, blobs, out)
}

fn hash_with(platform: Platform, key: &[u32; 8], blobs: &[&[u8]], out: &mut Vec<Id>) {
    let n = blobs.len();
    debug_assert!(
        n <= LANES
            && blobs
                .iter()
                .all(|b| fits(b.len()) && b.len() == blobs[0].len())
    );
    let Some(first) = blobs.first() else { return };
    let chunks = first.len() / CHUNK;
    // The chaining values of each blob's tree level, blob after blob: at first its chunks',
    // then each parent level's, until one is left, the root.
    let mut cvs = vec![0u8; n * chunks * 32];
    let mut level = vec![0u8; n * chunks * 32];
    for c in 0..chunks {
        let inputs: Vec<&[u8; CHUNK]> = blobs
            .iter()
            .map(|b| b[c * CHUNK..][..CHUNK].try_into().expect("a whole chunk"))
            .collect();
        // The chunk counter is the chunk's index in its own blob, the same in every lane.
        platform.hash_many(
            &inputs,
            key,
            c as u64,
            IncrementCounter::No,
            KEYED_HASH,
            CHUNK_START,
            CHUNK_END,
            &mut level[..n * 32],
        );
        for (b, cv) in level[..n * 32].chunks_exact(32).enumerate() {
            cvs[(b * chunks + c) * 32..][..32].copy_from_slice(cv);
        }
    }
    let mut width = chunks;
    while width > 1 {
        // Each parent's block is its two children's values, adjacent in `cvs`.
        let inputs: Vec<&[u8; 64]> = (0..n)
            .flat_map(|b| {
                let row = &cvs[b * chunks * 32..][..width * 32];
                row.chunks_exact(64)
                    .map(|p| p.try_into().expect("two values"))
            })
            .collect();
        let root = if width == 2 { ROOT } else { 0 };
        let parents = n * width / 2;
        platform.hash_many(
            &inputs,
            key,
            0,
            IncrementCounter::No,
            KEYED_HASH | PARENT | root,
            0,
            0,
            &mut level[..parents * 32],
        );
        width /= 2;
        for (b, row) in level[..parents * 32].chunks_exact(width * 32).enumerate() {
            cvs[b * chunks * 32..][..width * 32].copy_from_slice(row);
        }
    }
    out.extend((0..n).map(|b| Id(cvs[b * chunks * 32..][..32].try_into().expect("32 bytes"))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every kernel this CPU runs, the portable one included.
    fn kernels() -> Vec<Platform> {
        // The widest kernel (AVX-512 where the crate was built with it) is the detected one.
        let mut all = vec![Platform::portable(), Platform::detect()];
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        all.extend(
            [Platform::sse2(), Platform::sse41(), Platform::avx2()]
                .into_iter()
                .flatten(),
        );
        all
    }

    fn expected(key: &[u8; 32], blobs: &[&[u8]]) -> Vec<Id> {
        blobs
            .iter()
            .map(|b| Id(*blake3::keyed_hash(key, b).as_bytes()))
            .collect()
    }

    #[test]
    fn only_perfect_trees_of_whole_chunks_fit() {
        for len in [2048, 4096, 8192, 16384, 65536] {
            assert!(fits(len), "{len}");
        }
        for len in [0, 1024, 3072, 4095, 4097, 6144, 131072] {
            assert!(!fits(len), "{len}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Side by side, every kernel gives `keyed_hash`'s ids, for every page size that
        /// fits and every number of lanes used.
        #[test]
        fn every_kernel_gives_the_keyed_hash(
            key in any::<[u8; 32]>(),
            chunks_log in 1u32..=6,
            n in 1usize..=LANES,
            seed in any::<u64>(),
        ) {
            let len = CHUNK << chunks_log;
            let mut x = seed | 1;
            let data: Vec<u8> = (0..n * len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let blobs: Vec<&[u8]> = data.chunks(len).collect();
            let want = expected(&key, &blobs);
            for kernel in kernels() {
                let mut got = Vec::new();
                hash_with(kernel, &key_words(&key), &blobs, &mut got);
                prop_assert_eq!(&got, &want, "{:?}", kernel);
            }
        }
    }
}
