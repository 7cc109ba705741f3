//! Property tests for every encode/decode pair in cairn-format, and "never panics" properties
//! for every decoder on arbitrary bytes and on damaged valid encodings.
//!
//! Case counts are bounded so the whole file runs in a few seconds in a debug build:
//! `cargo test -p cairn-format --test properties`. For a longer soak, multiply every count:
//! `CAIRN_PROPTEST_SCALE=50 cargo test --release -p cairn-format --test properties`.

use cairn_format::chunker::{ChunkPolicy, Chunker, ChunkerParams};
use cairn_format::config::RepoConfig;
use cairn_format::content_list::{ContentList, Op};
use cairn_format::envelope::{self, EnvelopeError, SeekableReader};
use cairn_format::frame::{self, Compression, FrameCompressor};
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::keys::{self, KeyInfo, KeyRecord};
use cairn_format::pack::{self, BlobEntry, FrameRef, PackBuilder, PackKind, PackTrailer};
use cairn_format::record::{self, RecordKind, HEADER_LEN};
use cairn_format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use cairn_format::tree::{valid_name, Node, NodeKind, Tree, Xattr};
use cairn_format::{ChunkIdKey, Error, Id, MAX_BLOB_LEN, MAX_FRAME_LEN};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeSet;
use std::io::{self, Cursor, Read};

// ---------------------------------------------------------------------------------------------
// Fixtures and strategies
// ---------------------------------------------------------------------------------------------

/// Fixed age X25519 identities (secret, recipient), generated once with `age-keygen` for these
/// tests. They protect nothing.
const IDENTITIES: [(&str, &str); 3] = [
    (
        "AGE-SECRET-KEY-18WRT8PGGTQL4AEWQFQ05Q7LWXFG8VQ04P2XWKGVDAYSMSH2JC6PQHZXUZP",
        "age1cs0sqpmfl29qhlm2kvcvt923mx8ls6yuafae4c8q80ec7hy8vydsq4e33s",
    ),
    (
        "AGE-SECRET-KEY-1MH2XSTYE8J4D4HRWKZSQ4LVKPSPV24HZAN5UFAXU0GF846W098ZQD39964",
        "age1rdt7m429zr2hp642m2udte7fkhkgcxyqk9e4399m8erxhlr43fese625r2",
    ),
    (
        "AGE-SECRET-KEY-1Q04P55EN8299AC0SQHZX28HTUXUAP2TCPJLLV93X4NVNHYGQCGPSP0P6YJ",
        "age1sxp5drecqvclkqxqs4s0xw307q89e5vrknpv0q8mwk5ar9xeryxsca5zlp",
    ),
];

const ALL_KINDS: [RecordKind; 7] = [
    RecordKind::Config,
    RecordKind::Keys,
    RecordKind::PackTrailer,
    RecordKind::Index,
    RecordKind::Tree,
    RecordKind::Snapshot,
    RecordKind::ContentList,
];

const BAD_NAMES: &[&[u8]] = &[b"", b".", b"..", b"/", b"a/b", b"../x", b"a\0b", b"\0"];

/// Starts of age files, so arbitrary bytes get past the first header checks.
const AGE_PREFIXES: &[&[u8]] = &[
    b"",
    b"age-encryption.org/v1\n",
    b"age-encryption.org/v1\n-> X25519 ",
    b"age-encryption.org/v1\n-> scrypt ",
    b"-----BEGIN AGE ENCRYPTED FILE-----\n",
];

/// `n` cases, times `CAIRN_PROPTEST_SCALE` when set.
fn cases(n: u32) -> ProptestConfig {
    let scale = std::env::var("CAIRN_PROPTEST_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    ProptestConfig::with_cases(n.saturating_mul(scale.max(1)))
}

fn identity(i: usize) -> age::x25519::Identity {
    envelope::parse_identity(IDENTITIES[i].0).expect("fixture identity")
}

fn recipient(i: usize) -> age::x25519::Recipient {
    envelope::parse_recipient(IDENTITIES[i].1).expect("fixture recipient")
}

/// Deterministic filler, so large inputs cost one strategy value instead of one per byte.
fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
    state |= 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Byte strings of up to `max` bytes: random noise, a repeated short pattern (compressible,
/// and pathological for CDC when the pattern is one byte), or small literal vectors.
fn arb_data(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0..=max, any::<u64>()).prop_map(|(len, seed)| pseudo_random(len, seed)),
        (vec(any::<u8>(), 1..8), 0..=max)
            .prop_map(move |(pat, len)| { pat.iter().copied().cycle().take(len).collect() }),
        vec(any::<u8>(), 0..64),
    ]
}

fn arb_id() -> impl Strategy<Value = Id> {
    any::<[u8; 32]>().prop_map(Id)
}

/// An even number in `lo..=hi` (both even).
fn even(lo: u32, hi: u32) -> impl Strategy<Value = u32> {
    (lo / 2..=hi / 2).prop_map(|x| x * 2)
}

/// Any parameters `ChunkerParams::validate` accepts, over its whole range.
fn valid_params() -> impl Strategy<Value = ChunkerParams> {
    even(256, 4 << 20).prop_flat_map(|avg| {
        (
            even(64, avg.min(1 << 20)),
            even(avg.max(1024), MAX_BLOB_LEN),
        )
            .prop_map(move |(min, max)| ChunkerParams { min, avg, max })
    })
}

/// Valid parameters small enough that a few KiB of data gives several chunks.
fn small_params() -> impl Strategy<Value = ChunkerParams> {
    even(256, 8192).prop_flat_map(|avg| {
        let top = avg.max(1024);
        (even(64, avg), even(top, 4 * top)).prop_map(move |(min, max)| ChunkerParams {
            min,
            avg,
            max,
        })
    })
}

fn arb_config() -> impl Strategy<Value = RepoConfig> {
    (
        arb_id(),
        any::<i64>(),
        valid_params(),
        (1u32 << 20)..=(256 << 20),
        -7i32..=22,
    )
        .prop_map(
            |(repo_id, created_unix, chunker, pack_size, zstd_level)| RepoConfig {
                repo_id,
                created_unix,
                chunker,
                pack_size,
                zstd_level,
            },
        )
}

fn arb_keys() -> impl Strategy<Value = KeyRecord> {
    (
        arb_id(),
        any::<[u8; 32]>(),
        any::<u64>(),
        0..IDENTITIES.len(),
        vec(0..IDENTITIES.len(), 1..4),
        proptest::option::of(0..IDENTITIES.len()),
        proptest::option::of((proptest::option::of("[A-Za-z0-9._-]{1,64}"), any::<i64>())),
    )
        .prop_map(
            |(repo_id, chunk_key, chunker_seed, meta, mut masters, master, info)| KeyRecord {
                repo_id,
                chunk_key,
                chunker_seed,
                meta_identity: IDENTITIES[meta].0.to_string(),
                // A master identity is always one of the master recipients.
                master_recipients: {
                    masters.extend(master);
                    masters
                        .iter()
                        .map(|&i| IDENTITIES[i].1.to_string())
                        .collect()
                },
                master_identity: master.map(|i| IDENTITIES[i].0.to_string()),
                info: info.map(|(label, created_unix)| KeyInfo {
                    label,
                    created_unix,
                }),
            },
        )
}

fn arb_compression() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Zstd)]
}

fn arb_pack_kind() -> impl Strategy<Value = PackKind> {
    prop_oneof![Just(PackKind::Data), Just(PackKind::Tree)]
}

/// A small or any u32 (small values make valid combinations likely).
fn some_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..2048,
        any::<u32>(),
        Just(MAX_FRAME_LEN),
        Just(MAX_FRAME_LEN + 1)
    ]
}

fn some_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..100_000, any::<u64>(), Just(u64::MAX)]
}

/// Any blob entry, consistent or not.
fn arb_entry() -> impl Strategy<Value = BlobEntry> {
    (
        arb_id(),
        some_u64(),
        some_u32(),
        some_u32(),
        arb_compression(),
        some_u32(),
        some_u32(),
    )
        .prop_map(
            |(id, offset, stored_len, raw_len, compression, boff, len)| BlobEntry {
                id,
                frame: FrameRef {
                    offset,
                    stored_len,
                    raw_len,
                    compression,
                },
                offset: boff,
                len,
            },
        )
}

/// A blob entry that `validate(size)` accepts, for `size >= MAX_FRAME_LEN`.
fn arb_valid_entry(size: u64) -> impl Strategy<Value = BlobEntry> {
    (
        arb_id(),
        arb_compression(),
        0..=MAX_FRAME_LEN,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(move |(id, compression, raw_len, a, b, s, o)| {
            let offset_in_frame = a % (raw_len + 1);
            let len = b % (raw_len - offset_in_frame + 1);
            let stored_len = match compression {
                Compression::None => raw_len,
                Compression::Zstd => (u64::from(s) % (size.min(u32::MAX.into()) + 1)) as u32,
            };
            let room = size - u64::from(stored_len);
            let offset = if room == u64::MAX { o } else { o % (room + 1) };
            BlobEntry {
                id,
                frame: FrameRef {
                    offset,
                    stored_len,
                    raw_len,
                    compression,
                },
                offset: offset_in_frame,
                len,
            }
        })
}

fn arb_valid_index() -> impl Strategy<Value = IndexRecord> {
    let pack = (
        arb_id(),
        arb_pack_kind(),
        u64::from(MAX_FRAME_LEN)..=u64::MAX,
    )
        .prop_flat_map(|(id, kind, size)| {
            vec(arb_valid_entry(size), 0..6).prop_map(move |blobs| IndexPack {
                id,
                kind,
                size,
                blobs,
            })
        });
    vec(pack, 0..4).prop_map(|packs| IndexRecord { packs })
}

fn arb_any_index() -> impl Strategy<Value = IndexRecord> {
    let pack = (
        arb_id(),
        arb_pack_kind(),
        some_u64(),
        vec(arb_entry(), 0..4),
    )
        .prop_map(|(id, kind, size, blobs)| IndexPack {
            id,
            kind,
            size,
            blobs,
        });
    vec(pack, 0..3).prop_map(|packs| IndexRecord { packs })
}

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-zA-Z0-9._-]{1,12}".prop_map(String::into_bytes),
        vec(
            any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
            1..16
        ),
    ]
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn arb_node_kind() -> impl Strategy<Value = NodeKind> {
    select(vec![
        NodeKind::File,
        NodeKind::Dir,
        NodeKind::Symlink,
        NodeKind::Fifo,
        NodeKind::CharDevice,
        NodeKind::BlockDevice,
        NodeKind::Socket,
    ])
}

/// A node whose fields fit its kind (what `Tree::decode` requires).
fn arb_node() -> impl Strategy<Value = Node> {
    (
        arb_name(),
        arb_node_kind(),
        any::<(u32, u32, u32)>(),
        proptest::option::of(".{0,8}"),
        proptest::option::of(".{0,8}"),
        any::<(i64, i64, u64, u64, u64, u64, u64)>(),
        proptest::option::of(vec(any::<u8>(), 0..24)),
        vec((vec(any::<u8>(), 1..12), vec(any::<u8>(), 0..24)), 0..3),
        vec(arb_id(), 0..4),
        proptest::option::of(arb_id()),
    )
        .prop_map(
            |(
                name,
                kind,
                (mode, uid, gid),
                user,
                group,
                nums,
                target,
                xattrs,
                content,
                subtree,
            )| {
                let (mtime_ns, ctime_ns, size, device, inode, nlink, rdev) = nums;
                let mut n = Node::new(name, kind);
                n.mode = mode;
                n.uid = uid;
                n.gid = gid;
                n.user = user;
                n.group = group;
                n.mtime_ns = mtime_ns;
                n.ctime_ns = ctime_ns;
                n.size = size;
                n.device = device;
                n.inode = inode;
                n.nlink = nlink;
                n.rdev = rdev;
                n.target = target;
                n.xattrs = xattrs
                    .into_iter()
                    .map(|(name, value)| Xattr { name, value })
                    .collect();
                n.content = content;
                n.subtree = subtree;
                match kind {
                    NodeKind::File => n.subtree = None,
                    NodeKind::Dir => {
                        n.subtree = Some(subtree.unwrap_or_default());
                        n.content.clear();
                    }
                    NodeKind::Symlink => {
                        n.target.get_or_insert_with(Vec::new);
                        n.content.clear();
                    }
                    _ => {
                        n.content.clear();
                        n.subtree = None;
                    }
                }
                n
            },
        )
}

/// Nodes with unique names, in arbitrary order.
fn arb_nodes() -> impl Strategy<Value = Vec<Node>> {
    vec(arb_node(), 0..10)
        .prop_map(|nodes| {
            let mut seen = BTreeSet::new();
            nodes
                .into_iter()
                .filter(|n| seen.insert(n.name.clone()))
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

fn arb_source() -> impl Strategy<Value = SourceKind> {
    select(vec![
        SourceKind::Paths,
        SourceKind::Etcd,
        SourceKind::StaticPods,
        SourceKind::Cluster,
        SourceKind::Project,
    ])
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (
        any::<i64>(),
        any::<String>(),
        ".{0,12}",
        arb_source(),
        vec(any::<String>(), 0..4),
        vec("[a-z0-9-]{1,10}", 0..4),
        arb_id(),
        proptest::option::of(arb_id()),
        any::<[u64; 9]>(),
        ".{0,16}",
        vec((".{0,8}", ".{0,8}"), 0..4),
    )
        .prop_map(
            |(time_ns, host, username, source, paths, tags, tree, parent, s, program, facts)| {
                Snapshot {
                    time_ns,
                    host,
                    username,
                    source,
                    paths,
                    tags,
                    tree,
                    parent,
                    stats: SnapshotStats {
                        files: s[0],
                        dirs: s[1],
                        others: s[2],
                        bytes: s[3],
                        files_read: s[4],
                        blobs_added: s[5],
                        stored_added: s[6],
                        unreadable: s[7],
                        duration_ms: s[8],
                    },
                    program,
                    facts,
                }
            },
        )
}

/// One frame to put in a pack: leading padding not covered by any blob, the blobs, and
/// whether to store it raw even when zstd would pay.
#[derive(Debug, Clone)]
struct FrameSpec {
    pad: Vec<u8>,
    blobs: Vec<Vec<u8>>,
    force_raw: bool,
}

fn arb_frame_spec() -> impl Strategy<Value = FrameSpec> {
    (
        vec(any::<u8>(), 0..8),
        vec(arb_data(3000), 1..5),
        any::<bool>(),
    )
        .prop_map(|(pad, blobs, force_raw)| FrameSpec {
            pad,
            blobs,
            force_raw,
        })
}

/// Build a pack from frame specs; returns the plaintext, the builder's trailer and each
/// blob's plaintext in trailer order.
fn build_pack(kind: PackKind, frames: &[FrameSpec]) -> (Vec<u8>, PackTrailer, Vec<Vec<u8>>) {
    let key = ChunkIdKey([42; 32]);
    let mut c = FrameCompressor::new(3).unwrap();
    let mut p = PackBuilder::new(kind, 0);
    let mut expected = Vec::new();
    for f in frames {
        let mut raw = f.pad.clone();
        let mut locs = Vec::new();
        for b in &f.blobs {
            locs.push((key.id(b), raw.len() as u32, b.len() as u32));
            raw.extend_from_slice(b);
            expected.push(b.clone());
        }
        let (how, stored) = if f.force_raw {
            (Compression::None, &raw[..])
        } else {
            c.compress(&raw)
        };
        let added = p.add_frame(how, stored, raw.len() as u32, &locs);
        assert_eq!(added.len(), f.blobs.len());
    }
    let (bytes, trailer) = p.finish();
    (bytes, trailer, expected)
}

/// A damage to apply to a valid encoding. Positions are reduced modulo the length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    Insert(usize, u8),
    Remove(usize),
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let m = prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ];
    vec(m, 1..4)
}

fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for m in mutations {
        let n = out.len();
        match m {
            Mutation::Flip(i, bit) if n > 0 => out[i % n] ^= 1 << bit,
            Mutation::Set(i, b) if n > 0 => out[i % n] = *b,
            Mutation::Truncate(i) => out.truncate(i % (n + 1)),
            Mutation::Extend(tail) => out.extend_from_slice(tail),
            Mutation::Insert(i, b) => out.insert(i % (n + 1), *b),
            Mutation::Remove(i) if n > 0 => {
                out.remove(i % n);
            }
            _ => {}
        }
    }
    out
}

/// A record header of `kind` followed by arbitrary bytes, to get past the header check.
fn with_header(letter: u8, body: &[u8]) -> Vec<u8> {
    let mut out = b"cairn".to_vec();
    out.push(letter);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn letter(kind: RecordKind) -> u8 {
    record::encode(kind, &())[5]
}

// ---------------------------------------------------------------------------------------------
// Decoders that must never panic. Each returns normally whatever the bytes; when a decoder
// accepts, the value must survive its own encoder.
// ---------------------------------------------------------------------------------------------

fn check_all_decoders(bytes: &[u8]) {
    for kind in ALL_KINDS {
        let _ = record::decode::<Vec<u32>>(kind, bytes);
        let _ = record::decode::<(String, Option<u64>, bool)>(kind, bytes);
    }
    if let Ok(cfg) = RepoConfig::decode(bytes) {
        assert_eq!(RepoConfig::decode(&cfg.encode()).unwrap(), cfg);
    }
    if let Ok(k) = KeyRecord::decode(bytes) {
        assert_eq!(KeyRecord::decode(&k.encode()).unwrap(), k);
    }
    if let Ok(k) = keys::write_key_from_text(&String::from_utf8_lossy(bytes)) {
        assert!(k.master_identity.is_none());
    }
    check_pack_decoders(bytes);
    if let Ok(ix) = IndexRecord::decode(bytes) {
        assert_eq!(IndexRecord::decode(&ix.encode()).unwrap(), ix);
    }
    if let Ok(t) = Tree::decode(bytes) {
        assert!(t.nodes.iter().all(|n| valid_name(&n.name)));
        assert!(t.nodes.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(Tree::decode(&t.clone().encode()).unwrap(), t);
    }
    if let Ok(s) = Snapshot::decode(bytes) {
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
    }
    if let Ok(l) = ContentList::decode(bytes) {
        assert_eq!(ContentList::decode(&l.encode()).unwrap(), l);
        let total: u64 = l.ops.iter().map(Op::count).sum();
        assert_eq!(total, l.len);
    }
}

fn check_pack_decoders(bytes: &[u8]) {
    if let Ok(t) = pack::parse_pack(bytes) {
        for e in &t.blobs {
            if let Ok(b) = pack::read_blob(bytes, e) {
                assert_eq!(b.len(), e.len as usize);
            }
        }
    }
    let n = bytes.len();
    if n >= pack::FOOTER_LEN {
        if let Ok(r) = pack::trailer_range(&bytes[n - pack::FOOTER_LEN..], n as u64) {
            assert!(r.start <= r.end && r.end <= n as u64);
            let _ = pack::decode_trailer(&bytes[r.start as usize..r.end as usize], r.start);
        }
    }
    let _ = pack::decode_trailer(bytes, n as u64);
}

// ---------------------------------------------------------------------------------------------
// Record framing
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn record_round_trip_and_header_checks(
        kind_i in 0..ALL_KINDS.len(),
        other_i in 0..ALL_KINDS.len(),
        value in (vec(any::<u32>(), 0..20), any::<String>(), any::<Option<i64>>()),
        version in any::<u16>(),
        tail in vec(any::<u8>(), 1..8),
    ) {
        let kind = ALL_KINDS[kind_i];
        let bytes = record::encode(kind, &value);
        prop_assert_eq!(&bytes[..5], b"cairn");
        prop_assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), kind.current_version());
        prop_assert_eq!(record::decode::<(Vec<u32>, String, Option<i64>)>(kind, &bytes).unwrap(), value.clone());

        if other_i != kind_i {
            let is_bad_magic = matches!(
                record::decode::<(Vec<u32>, String, Option<i64>)>(ALL_KINDS[other_i], &bytes),
                Err(Error::BadMagic { .. })
            );
            prop_assert!(is_bad_magic);
        }
        let mut versioned = bytes.clone();
        versioned[6..8].copy_from_slice(&version.to_le_bytes());
        let r = record::decode::<(Vec<u32>, String, Option<i64>)>(kind, &versioned);
        if version == 0 || version > kind.current_version() {
            let is_unsupported = matches!(r, Err(Error::UnsupportedVersion { found, .. }) if found == version);
            prop_assert!(is_unsupported);
        } else {
            prop_assert!(r.is_ok());
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&tail);
        prop_assert!(record::decode::<(Vec<u32>, String, Option<i64>)>(kind, &longer).is_err());
        for cut in 0..HEADER_LEN {
            let is_truncated = matches!(
                record::decode::<(Vec<u32>, String, Option<i64>)>(kind, &bytes[..cut]),
                Err(Error::Truncated { .. })
            );
            prop_assert!(is_truncated);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// config
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn config_round_trip(cfg in arb_config()) {
        prop_assert_eq!(RepoConfig::decode(&cfg.encode()).unwrap(), cfg);
    }

    /// decode accepts exactly the configs whose fields are in range.
    #[test]
    fn config_validation_matches_ranges(
        cfg in arb_config(),
        min in prop_oneof![any::<u32>(), 0u32..5000],
        avg in prop_oneof![any::<u32>(), 0u32..70000],
        max in prop_oneof![any::<u32>(), 0u32..300_000],
        pack_size in prop_oneof![any::<u32>(), (1u32 << 20) - 2..(1 << 20) + 2],
        zstd_level in -30i32..30,
    ) {
        let params = ChunkerParams { min, avg, max };
        let cfg = RepoConfig { chunker: params, pack_size, zstd_level, ..cfg };
        let params_ok = (64..=1 << 20).contains(&min)
            && min <= avg
            && avg <= max
            && (256..=4 << 20).contains(&avg)
            && (1024..=MAX_BLOB_LEN).contains(&max)
            && min % 2 == 0 && avg % 2 == 0 && max % 2 == 0;
        prop_assert_eq!(params.validate().is_ok(), params_ok);
        let ok = params_ok
            && (1 << 20..=256 << 20).contains(&pack_size)
            && (-7..=22).contains(&zstd_level);
        prop_assert_eq!(RepoConfig::decode(&cfg.encode()).is_ok(), ok);
    }
}

// ---------------------------------------------------------------------------------------------
// keys and write-key text
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn keys_round_trip(rec in arb_keys()) {
        let bytes = rec.encode();
        // Version 2 exactly when there is a key object description.
        prop_assert_eq!(bytes[6], if rec.info.is_some() { 2 } else { 1 });
        prop_assert_eq!(KeyRecord::decode(&bytes).unwrap(), rec.clone());
        // The same secrets as version 1 (what cairn wrote before metadata) read back without
        // a description; a write key is always version 1.
        let v1 = KeyRecord { info: None, ..rec.clone() };
        prop_assert_eq!(KeyRecord::decode(&v1.encode()).unwrap(), v1);
        prop_assert_eq!(rec.to_write_key().encode()[6], 1);
    }

    #[test]
    fn write_key_text_round_trip(
        rec in arb_keys(),
        comments in vec("(# [ -~]{0,30})?", 0..4),
        crlf in any::<bool>(),
        indent in "[ \t]{0,3}",
    ) {
        let text = keys::write_key_to_text(&rec, None);
        prop_assert!(!text.contains("AGE-SECRET-KEY"));
        let back = keys::write_key_from_text(&text).unwrap();
        prop_assert_eq!(&back, &rec.to_write_key());
        prop_assert!(back.master_identity.is_none());

        // Extra comment lines, indentation and CRLF line ends are tolerated.
        let line = text.lines().find(|l| l.starts_with("CAIRN-WRITE-KEY-1:")).unwrap();
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut edited = comments.join(eol);
        edited.push_str(eol);
        edited.push_str(&indent);
        edited.push_str(line);
        edited.push_str(&indent);
        edited.push_str(eol);
        prop_assert_eq!(keys::write_key_from_text(&edited).unwrap(), rec.to_write_key());
    }

    /// A key record carrying the master identity is refused as a write key; a record with no
    /// recipient or with a bad key string is refused outright.
    #[test]
    fn keys_refuse_bad_content(rec in arb_keys(), master in 0..IDENTITIES.len(), junk in "[a-z0-9]{0,20}") {
        use base64::Engine as _;
        let mut with_master = KeyRecord { master_identity: Some(IDENTITIES[master].0.into()), ..rec.clone() };
        with_master.master_recipients.push(IDENTITIES[master].1.into());
        let text = format!(
            "CAIRN-WRITE-KEY-1:{}\n",
            base64::engine::general_purpose::STANDARD.encode(with_master.encode())
        );
        prop_assert!(matches!(keys::write_key_from_text(&text), Err(Error::Key(_))));

        let none = KeyRecord { master_recipients: vec![], ..rec.clone() };
        prop_assert!(KeyRecord::decode(&none.encode()).is_err());
        let bad_meta = KeyRecord { meta_identity: junk.clone(), ..rec.clone() };
        prop_assert!(KeyRecord::decode(&bad_meta.encode()).is_err());
        let foreign_master = KeyRecord {
            master_identity: Some(IDENTITIES[master].0.into()),
            master_recipients: rec.master_recipients.iter().filter(|r| **r != IDENTITIES[master].1).cloned().collect(),
            ..rec.clone()
        };
        prop_assert!(KeyRecord::decode(&foreign_master.encode()).is_err());
        let mut bad_recipient = rec.clone();
        bad_recipient.master_recipients.push(junk);
        prop_assert!(KeyRecord::decode(&bad_recipient.encode()).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// packs
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(48))]

    #[test]
    fn pack_round_trip(kind in arb_pack_kind(), frames in vec(arb_frame_spec(), 0..5)) {
        let (bytes, trailer, expected) = build_pack(kind, &frames);
        prop_assert_eq!(&bytes[bytes.len() - 4..], pack::FOOTER_MAGIC);
        let parsed = pack::parse_pack(&bytes).unwrap();
        prop_assert_eq!(&parsed, &trailer);
        prop_assert_eq!(parsed.kind, kind);
        prop_assert_eq!(parsed.blobs.len(), expected.len());

        // The two-step path a ranged reader uses gives the same trailer.
        let n = bytes.len();
        let range = pack::trailer_range(&bytes[n - pack::FOOTER_LEN..], n as u64).unwrap();
        let two_step = pack::decode_trailer(&bytes[range.start as usize..range.end as usize], range.start).unwrap();
        prop_assert_eq!(&two_step, &trailer);

        let key = ChunkIdKey([42; 32]);
        for (entry, want) in parsed.blobs.iter().zip(&expected) {
            let got = pack::read_blob(&bytes, entry).unwrap();
            prop_assert_eq!(&got, want);
            prop_assert_eq!(key.id(&got), entry.id);
            let f = entry.frame;
            let stored = &bytes[f.offset as usize..(f.offset + u64::from(f.stored_len)) as usize];
            prop_assert_eq!(&pack::blob_from_frame(stored, entry).unwrap(), want);
            // Frames lie before the trailer.
            prop_assert!(f.offset + u64::from(f.stored_len) <= range.start);
        }
    }

    /// A damaged pack never panics the parser or the blob reader, and a blob read from it is
    /// either refused or has the length the trailer claims.
    #[test]
    fn damaged_packs_never_panic(frames in vec(arb_frame_spec(), 1..3), mutations in arb_mutations()) {
        let (bytes, _, _) = build_pack(PackKind::Data, &frames);
        check_pack_decoders(&mutate(&bytes, &mutations));
    }

    /// Hostile trailer entries are refused by read_blob rather than panicking or reading out
    /// of bounds.
    #[test]
    fn arbitrary_entries_never_panic(entry in arb_entry(), plaintext in vec(any::<u8>(), 0..4096)) {
        let ok = entry.validate(plaintext.len() as u64).is_ok();
        let r = pack::read_blob(&plaintext, &entry);
        if !ok {
            prop_assert!(r.is_err());
        }
        if let Ok(b) = r {
            prop_assert_eq!(b.len(), entry.len as usize);
        }
    }

    #[test]
    fn trailer_range_is_within_the_plaintext(footer in vec(any::<u8>(), 0..12), magic in any::<bool>(), len in some_u64()) {
        let mut footer = footer;
        if magic && footer.len() == pack::FOOTER_LEN {
            footer[4..].copy_from_slice(pack::FOOTER_MAGIC);
        }
        if let Ok(r) = pack::trailer_range(&footer, len) {
            prop_assert!(r.start <= r.end);
            prop_assert_eq!(r.end, len - pack::FOOTER_LEN as u64);
            prop_assert!(r.end - r.start <= u64::from(pack::MAX_TRAILER_LEN));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// index
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn index_round_trip(rec in arb_valid_index()) {
        prop_assert_eq!(IndexRecord::decode(&rec.encode()).unwrap(), rec);
    }

    /// decode accepts exactly the records whose every entry fits its pack.
    #[test]
    fn index_validation_matches_entries(rec in arb_any_index()) {
        let ok = rec.packs.iter().all(|p| p.blobs.iter().all(|b| b.validate(p.size).is_ok()));
        let r = IndexRecord::decode(&rec.encode());
        prop_assert_eq!(r.is_ok(), ok);
        if let Ok(back) = r {
            prop_assert_eq!(back, rec);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// trees
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn tree_round_trip_sorts(nodes in arb_nodes()) {
        let mut tree = Tree { nodes: nodes.clone() };
        let bytes = tree.encode();
        let back = Tree::decode(&bytes).unwrap();
        let mut sorted = nodes;
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        prop_assert_eq!(&back.nodes, &sorted);
        for n in &sorted {
            prop_assert_eq!(back.get(&n.name), Some(n));
        }
        prop_assert!(back.get(b"").is_none());
    }

    #[test]
    fn tree_refuses_unsafe_names(
        nodes in arb_nodes(),
        bad in select(BAD_NAMES),
        pos in any::<prop::sample::Index>(),
    ) {
        prop_assert!(!valid_name(bad));
        let mut nodes = nodes;
        let mut node = Node::new(bad.to_vec(), NodeKind::Fifo);
        node.nlink = 1;
        let i = pos.index(nodes.len() + 1);
        nodes.insert(i, node);
        let mut tree = Tree { nodes };
        prop_assert!(Tree::decode(&tree.encode()).is_err());
    }

    #[test]
    fn tree_refuses_duplicates_and_disorder(nodes in arb_nodes(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!nodes.is_empty());
        let dup = nodes[pick.index(nodes.len())].clone();
        let mut with_dup = Tree { nodes: [nodes.clone(), vec![dup]].concat() };
        prop_assert!(Tree::decode(&with_dup.encode()).is_err());

        let mut sorted = nodes;
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        if sorted.len() >= 2 {
            sorted.reverse();
            let reversed = record::encode_at(RecordKind::Tree, 1, &Tree { nodes: sorted });
            prop_assert!(Tree::decode(&reversed).is_err());
        }
    }

    /// Kind/field mismatches are refused.
    #[test]
    fn tree_refuses_inconsistent_nodes(node in arb_node(), id in arb_id()) {
        let mut n = node;
        match n.kind {
            NodeKind::Dir => n.subtree = None,
            NodeKind::Symlink => n.target = None,
            NodeKind::File => n.subtree = Some(id),
            _ => n.content.push(id),
        }
        let mut tree = Tree { nodes: vec![n] };
        prop_assert!(Tree::decode(&tree.encode()).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// snapshots
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn snapshot_round_trip(s in arb_snapshot()) {
        prop_assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
    }
}

// ---------------------------------------------------------------------------------------------
// frames
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn frame_round_trip(raw in arb_data(40_000), level in -7i32..=9) {
        let mut c = FrameCompressor::new(level).unwrap();
        let (how, stored) = c.compress(&raw);
        if how == Compression::None {
            prop_assert_eq!(stored, &raw[..]);
        } else {
            prop_assert!(stored.len() < raw.len());
        }
        let n = raw.len() as u32;
        prop_assert_eq!(&frame::decompress(stored, how, n).unwrap(), &raw);
        prop_assert!(frame::decompress(stored, how, n + 1).is_err());
        if n > 0 {
            prop_assert!(frame::decompress(stored, how, n - 1).is_err());
        }
    }

    #[test]
    fn frame_size_limit(stored in vec(any::<u8>(), 0..64), how in arb_compression(), over in 1u32..=u32::MAX - MAX_FRAME_LEN) {
        let is_too_large = matches!(
            frame::decompress(&stored, how, MAX_FRAME_LEN + over),
            Err(Error::TooLarge { .. })
        );
        prop_assert!(is_too_large);
    }

    #[test]
    fn frame_decompress_never_panics(
        stored in prop_oneof![
            vec(any::<u8>(), 0..256),
            // A zstd magic number in front of noise gets further into the decoder.
            vec(any::<u8>(), 0..256).prop_map(|b| [&[0x28, 0xb5, 0x2f, 0xfd][..], &b].concat()),
        ],
        how in arb_compression(),
        raw_len in prop_oneof![0u32..4096, 0..=MAX_FRAME_LEN],
    ) {
        if let Ok(raw) = frame::decompress(&stored, how, raw_len) {
            prop_assert_eq!(raw.len(), raw_len as usize);
        }
    }

    #[test]
    fn damaged_frames_never_panic(raw in arb_data(5000), mutations in arb_mutations()) {
        let stored = zstd_frame(&raw);
        let damaged = mutate(&stored, &mutations);
        if let Ok(out) = frame::decompress(&damaged, Compression::Zstd, raw.len() as u32) {
            prop_assert_eq!(out.len(), raw.len());
        }
    }
}

/// A zstd frame even for incompressible data (FrameCompressor would store that raw).
fn zstd_frame(raw: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(raw, 1).unwrap()
}

// ---------------------------------------------------------------------------------------------
// chunker
// ---------------------------------------------------------------------------------------------

/// A reader returning at most `step` bytes per call and, if asked, `Interrupted` before every
/// successful read.
struct Uneven<'a> {
    data: &'a [u8],
    step: usize,
    interrupt: bool,
    pending_interrupt: bool,
}

impl Read for Uneven<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.interrupt {
            self.pending_interrupt = !self.pending_interrupt;
            if self.pending_interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
        }
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn chunk_all<R: Read>(r: R, policy: ChunkPolicy) -> Vec<Vec<u8>> {
    Chunker::new(r, policy).map(|c| c.unwrap()).collect()
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn cdc_reassembles_within_bounds(
        data in arb_data(40_000),
        params in small_params(),
        seed in any::<u64>(),
        step in 1usize..5000,
    ) {
        prop_assert!(params.validate().is_ok());
        let policy = ChunkPolicy::Cdc { params, seed };
        let chunks = chunk_all(&data[..], policy);
        prop_assert_eq!(chunks.concat(), data.clone());
        if let Some((last, rest)) = chunks.split_last() {
            prop_assert!(!last.is_empty() && last.len() <= params.max as usize);
            for c in rest {
                prop_assert!(
                    c.len() >= params.min as usize && c.len() <= params.max as usize,
                    "chunk of {} bytes with {:?}", c.len(), params
                );
            }
        } else {
            prop_assert!(data.is_empty());
        }
        // Boundaries depend on content only, not on how the reader splits it.
        let uneven = Uneven { data: &data, step, interrupt: false, pending_interrupt: false };
        prop_assert_eq!(chunk_all(uneven, policy), chunks);
    }

    #[test]
    fn fixed_reassembles_in_pages(
        data in arb_data(40_000),
        size in prop_oneof![0u32..5000, Just(4096u32), any::<u32>()],
        step in 1usize..5000,
        interrupt in any::<bool>(),
    ) {
        let eff = size.clamp(64, MAX_BLOB_LEN) as usize;
        let chunks = chunk_all(&data[..], ChunkPolicy::Fixed(size));
        prop_assert_eq!(chunks.concat(), data.clone());
        prop_assert_eq!(chunks.len(), data.len().div_ceil(eff));
        if let Some((last, rest)) = chunks.split_last() {
            prop_assert!(!last.is_empty() && last.len() <= eff);
            prop_assert!(rest.iter().all(|c| c.len() == eff));
        }
        // Short reads and EINTR do not move the cuts.
        let uneven = Uneven { data: &data, step, interrupt, pending_interrupt: false };
        prop_assert_eq!(chunk_all(uneven, ChunkPolicy::Fixed(size)), chunks);
    }
}

/// Every config `validate` accepts runs fastcdc within its documented range: the largest
/// minimum it accepts (1 MiB, fastcdc's `MINIMUM_MAX`) chunks, one byte more is refused.
#[test]
fn every_valid_config_gives_a_working_chunker() {
    let params = ChunkerParams {
        min: 1 << 20,
        avg: 4 << 20,
        max: 16 << 20,
    };
    params.validate().unwrap();
    let data = vec![7u8; 1000];
    let chunks = chunk_all(&data[..], ChunkPolicy::Cdc { params, seed: 1 });
    assert_eq!(chunks.concat(), data);
    let too_big = ChunkerParams {
        min: (1 << 20) + 2,
        ..params
    };
    assert!(too_big.validate().is_err());
}

// ---------------------------------------------------------------------------------------------
// age envelopes
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn envelope_round_trip(
        plaintext in arb_data(150_000),
        to in vec(0..IDENTITIES.len(), 1..3),
        reader_i in any::<prop::sample::Index>(),
        ranges in vec((any::<prop::sample::Index>(), 0usize..70_000), 1..4),
    ) {
        let recipients: Vec<_> = to.iter().map(|&i| recipient(i)).collect();
        let ct = envelope::encrypt(&plaintext, &recipients);
        let who = to[reader_i.index(to.len())];
        let id = identity(who);
        prop_assert_eq!(&envelope::decrypt(&ct, &[&id], plaintext.len() as u64).unwrap(), &plaintext);
        if !plaintext.is_empty() {
            let is_too_large = matches!(
                envelope::decrypt(&ct, &[&id], plaintext.len() as u64 - 1),
                Err(EnvelopeError::TooLarge(_))
            );
            prop_assert!(is_too_large);
        }
        if let Some(stranger) = (0..IDENTITIES.len()).find(|i| !to.contains(i)) {
            let is_no_key = matches!(
                envelope::decrypt(&ct, &[&identity(stranger)], 1 << 20),
                Err(EnvelopeError::NoMatchingKey)
            );
            prop_assert!(is_no_key);
        }

        let mut r = SeekableReader::open(Cursor::new(&ct), &[&id]).unwrap();
        prop_assert_eq!(r.plaintext_len().unwrap(), plaintext.len() as u64);
        for (start, len) in ranges {
            let start = start.index(plaintext.len() + 1);
            let got = r.read_at(start as u64, len);
            if start + len <= plaintext.len() {
                prop_assert_eq!(&got.unwrap()[..], &plaintext[start..start + len]);
            } else {
                prop_assert!(got.is_err());
            }
        }
    }

    /// Damaged ciphertext either fails or (if the damage is outside what is authenticated,
    /// which age should not allow) yields the original plaintext: never different data.
    #[test]
    fn damaged_envelopes_never_yield_other_data(plaintext in arb_data(70_000), mutations in arb_mutations()) {
        let id = identity(0);
        let ct = envelope::encrypt(&plaintext, &[recipient(0)]);
        let damaged = mutate(&ct, &mutations);
        if let Ok(out) = envelope::decrypt(&damaged, &[&id], 1 << 20) {
            prop_assert_eq!(out, plaintext.clone());
        }
        if let Ok(mut r) = SeekableReader::open(Cursor::new(&damaged), &[&id]) {
            if let Ok(len) = r.plaintext_len() {
                if let Ok(out) = r.read_at(0, len as usize) {
                    prop_assert_eq!(out, plaintext);
                }
            }
        }
    }

    #[test]
    fn arbitrary_envelopes_never_panic(
        body in vec(any::<u8>(), 0..600),
        prefix in select(AGE_PREFIXES),
    ) {
        let data = [prefix, &body[..]].concat();
        let id = identity(0);
        let _ = envelope::decrypt(&data, &[&id], 1 << 16);
        let _ = envelope::is_passphrase_encrypted(&data);
        let _ = envelope::decrypt_with_passphrase(&data, "pw", 4, 1 << 16);
        if let Ok(mut r) = SeekableReader::open(Cursor::new(&data), &[&id]) {
            let _ = r.plaintext_len();
            let _ = r.read_at(0, 10);
        }
    }
}

/// `SeekableReader::read_at` past the end of the plaintext is an error. (age 0.12.1 panics
/// when asked to read past the end inside a short last chunk; the reader checks the range
/// first, since the loader passes frame offsets from an index that may be hostile.)
#[test]
fn seekable_read_past_the_end_is_an_error() {
    let id = identity(0);
    for len in [0usize, 1, 100, 70_000] {
        let ct = envelope::encrypt(&pseudo_random(len, 1), &[recipient(0)]);
        for offset in [len + 1, len + 10, 65_535, 131_071]
            .into_iter()
            .filter(|&o| o > len)
        {
            let mut r = SeekableReader::open(Cursor::new(&ct), &[&id]).unwrap();
            assert!(r.read_at(offset as u64, 1).is_err(), "{len} {offset}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every decoder on arbitrary bytes and on damaged valid encodings
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
        check_all_decoders(&bytes);
    }

    /// Arbitrary bodies behind a valid header, so postcard and the validators see them.
    #[test]
    fn decoders_never_panic_behind_a_valid_header(kind_i in 0..ALL_KINDS.len(), body in vec(any::<u8>(), 0..512)) {
        check_all_decoders(&with_header(letter(ALL_KINDS[kind_i]), &body));
    }

    #[test]
    fn write_key_parser_never_panics(text in any::<String>(), body in vec(any::<u8>(), 0..200)) {
        let _ = keys::write_key_from_text(&text);
        let _ = keys::write_key_from_text(&format!("CAIRN-WRITE-KEY-1:{text}"));
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(with_header(b'K', &body));
        let _ = keys::write_key_from_text(&format!("# c\nCAIRN-WRITE-KEY-1:{b64}\n"));
        let _ = envelope::parse_identity(&text);
        let _ = envelope::parse_recipient(&text);
    }
}

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn damaged_records_never_panic(
        encoded in prop_oneof![
            arb_config().prop_map(|c| c.encode()),
            arb_keys().prop_map(|k| k.encode()),
            arb_keys().prop_map(|k| keys::write_key_to_text(&k, Some("host-1")).into_bytes()),
            arb_valid_index().prop_map(|i| i.encode()),
            arb_nodes().prop_map(|nodes| Tree { nodes }.encode()),
            arb_snapshot().prop_map(|s| s.encode()),
            vec(arb_frame_spec(), 0..2).prop_map(|f| build_pack(PackKind::Tree, &f).0),
        ],
        mutations in arb_mutations(),
    ) {
        check_all_decoders(&encoded);
        check_all_decoders(&mutate(&encoded, &mutations));
    }
}

// ---------------------------------------------------------------------------------------------
// content lists
// ---------------------------------------------------------------------------------------------

/// Ids drawn from a small alphabet, so that deltas find equal positions.
fn few_ids(max: usize) -> impl Strategy<Value = Vec<Id>> {
    vec((0u8..6).prop_map(|b| Id([b; 32])), 0..max)
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn content_list_delta_round_trip(old in few_ids(300), new in few_ids(300), base in arb_id()) {
        prop_assert_eq!(ContentList::encode_full(&new), ContentList::full(&new).encode());
        let full = ContentList::decode(&ContentList::full(&new).encode()).unwrap();
        prop_assert_eq!(full.resolve(None).unwrap(), new.clone());
        let l = ContentList::decode(&ContentList::delta(&new, (base, &old)).encode()).unwrap();
        let back = match l.base {
            Some(b) => {
                prop_assert_eq!(b, base);
                l.resolve(Some(&old)).unwrap()
            }
            None => l.resolve(None).unwrap(),
        };
        prop_assert_eq!(back, new);
    }

    #[test]
    fn content_list_mutations_never_panic(new in few_ids(40), old in few_ids(40), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = ContentList::delta(&new, (Id([9; 32]), &old)).encode();
        let i = at % bytes.len();
        bytes[i] ^= byte | 1;
        if let Ok(l) = ContentList::decode(&bytes) {
            let _ = l.resolve(Some(&old));
            let _ = l.resolve(None);
        }
        check_all_decoders(&bytes);
    }

    #[test]
    fn tree_with_content_lists_round_trip(
        nodes in arb_nodes(),
        lists in vec(arb_id(), 1..4),
    ) {
        let mut tree = Tree { nodes };
        let mut listed = 0;
        for (i, n) in tree
            .nodes
            .iter_mut()
            .filter(|n| n.kind == NodeKind::File)
            .step_by(2)
            .enumerate()
        {
            // Files with one list, and every other one with all of them (a version-3 tree).
            n.content_lists = if i % 2 == 0 { lists[..1].to_vec() } else { lists.clone() };
            listed = listed.max(n.content_lists.len());
        }
        let bytes = tree.encode();
        let version: u16 = match listed {
            0 => 1,
            1 => 2,
            _ => 3,
        };
        prop_assert_eq!(&bytes[6..8], &version.to_le_bytes());
        let back = Tree::decode(&bytes).unwrap();
        for (n, b) in tree.nodes.iter().zip(&back.nodes) {
            prop_assert_eq!(&b.content_lists, &n.content_lists);
            if n.content_lists.is_empty() {
                prop_assert_eq!(b, n);
            } else {
                prop_assert!(b.content.is_empty());
            }
        }
    }
}
