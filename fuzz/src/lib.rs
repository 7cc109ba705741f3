//! Shared pieces of the cairn-format fuzz targets: the fixed test identity and seed inputs.
//!
//! Nothing here is used by cairn itself. `examples/seeds.rs` writes [`seeds`] into
//! `fuzz/corpus/<target>/` so the fuzzer starts from valid encodings instead of from nothing.

use cairn_format::chunker::ChunkerParams;
use cairn_format::config::RepoConfig;
use cairn_format::envelope;
use cairn_format::frame::{Compression, FrameCompressor};
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::keys::{self, KeyRecord};
use cairn_format::pack::{PackBuilder, PackKind};
use cairn_format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use cairn_format::tree::{Node, NodeKind, Tree, Xattr};
use cairn_format::{ChunkIdKey, Id};
use std::sync::OnceLock;

/// A fixed age X25519 identity, generated once with `age-keygen` for fuzzing only. It protects
/// nothing: it exists so that the envelope target and its seeds agree on a key.
pub const FUZZ_IDENTITY: &str =
    "AGE-SECRET-KEY-1S48V8UQVT0TC0KW4QR65ZPP6MQP43KK493LM5SRWUPDUXSWPW3JQ2P6R4J";

/// Passphrase of the passphrase-encrypted envelope seed.
pub const FUZZ_PASSPHRASE: &str = "fuzz";

/// [`FUZZ_IDENTITY`], parsed once.
pub fn identity() -> &'static age::x25519::Identity {
    static ID: OnceLock<age::x25519::Identity> = OnceLock::new();
    ID.get_or_init(|| envelope::parse_identity(FUZZ_IDENTITY).expect("valid fuzz identity"))
}

/// Small valid CDC parameter sets used by the chunker target (indexed by an input byte).
pub const SMALL_PARAMS: [ChunkerParams; 6] = [
    ChunkerParams {
        min: 64,
        avg: 256,
        max: 1024,
    },
    ChunkerParams {
        min: 128,
        avg: 512,
        max: 2048,
    },
    ChunkerParams {
        min: 256,
        avg: 1024,
        max: 4096,
    },
    ChunkerParams {
        min: 256,
        avg: 256,
        max: 1024,
    },
    ChunkerParams {
        min: 1024,
        avg: 1024,
        max: 1024,
    },
    ChunkerParams {
        min: 64,
        avg: 4096,
        max: 8192,
    },
];

fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn sample_config() -> RepoConfig {
    RepoConfig {
        repo_id: Id([7; 32]),
        created_unix: 1_700_000_000,
        chunker: ChunkerParams::default(),
        pack_size: RepoConfig::DEFAULT_PACK_SIZE,
        zstd_level: 3,
    }
}

fn sample_keys() -> KeyRecord {
    KeyRecord {
        repo_id: Id([9; 32]),
        chunk_key: [1; 32],
        chunker_seed: 77,
        meta_identity: FUZZ_IDENTITY.to_string(),
        master_recipients: vec![identity().to_public().to_string()],
        master_identity: Some(FUZZ_IDENTITY.to_string()),
        info: Some(cairn_format::keys::KeyInfo {
            label: Some("admin".into()),
            created_unix: 1_700_000_000,
        }),
    }
}

fn sample_tree() -> Tree {
    let mut file = Node::new(b"file".to_vec(), NodeKind::File);
    file.content = vec![Id([5; 32]), Id([6; 32])];
    file.size = 12345;
    file.user = Some("root".into());
    file.xattrs = vec![Xattr {
        name: b"security.selinux".to_vec(),
        value: b"system_u:object_r:etc_t:s0".to_vec(),
    }];
    let mut dir = Node::new(b"dir".to_vec(), NodeKind::Dir);
    dir.subtree = Some(Id([3; 32]));
    let mut link = Node::new(b"link".to_vec(), NodeKind::Symlink);
    link.target = Some(b"../file".to_vec());
    let mut dev = Node::new(b"null".to_vec(), NodeKind::CharDevice);
    dev.rdev = 0x103;
    Tree {
        nodes: vec![
            file,
            dir,
            link,
            dev,
            Node::new(b"fifo".to_vec(), NodeKind::Fifo),
        ],
    }
}

/// The sample tree with a file stored as `lists` content lists (version 2 for one, 3 for
/// several).
fn listed_tree(lists: u8) -> Vec<u8> {
    let mut tree = sample_tree();
    let mut long = Node::new(b"long.db".to_vec(), NodeKind::File);
    long.size = 1 << 30;
    long.content_lists = (0..lists).map(|b| Id([b + 9; 32])).collect();
    tree.nodes.push(long);
    tree.encode()
}

fn sample_snapshot() -> Snapshot {
    Snapshot {
        time_ns: 1_700_000_000_000_000_000,
        host: "master-0".into(),
        username: "root".into(),
        source: SourceKind::Cluster,
        paths: vec!["/etc/kubernetes".into()],
        tags: vec!["daily".into()],
        tree: Id([4; 32]),
        parent: Some(Id([2; 32])),
        stats: SnapshotStats {
            files: 3,
            bytes: 100,
            ..SnapshotStats::default()
        },
        program: "cairn 0.1.0".into(),
        facts: vec![("revision".into(), "42".into())],
    }
}

/// A pack with a shared zstd frame, a raw frame and a large compressible frame.
fn sample_pack() -> (Vec<u8>, cairn_format::pack::PackTrailer) {
    let key = ChunkIdKey([3; 32]);
    let mut c = FrameCompressor::new(3).expect("zstd");
    let mut p = PackBuilder::new(PackKind::Data, 0);
    let a = b"first small blob ".repeat(10);
    let b = b"second small blob".repeat(10);
    let run = [a.clone(), b.clone()].concat();
    let (how, stored) = c.compress(&run);
    p.add_frame(
        how,
        &stored,
        run.len() as u32,
        &[
            (key.id(&a), 0, a.len() as u32),
            (key.id(&b), a.len() as u32, b.len() as u32),
        ],
    );
    let noise = pseudo_random(300, 1);
    p.add_frame(Compression::None, &noise, 300, &[(key.id(&noise), 0, 300)]);
    let zeros = vec![0u8; 3000];
    let (how, stored) = c.compress(&zeros);
    p.add_frame(how, &stored, 3000, &[(key.id(&zeros), 0, 3000)]);
    p.finish()
}

/// Seed inputs per target name.
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let config = sample_config();
    let mut small = sample_config();
    small.chunker = SMALL_PARAMS[0];
    small.pack_size = 1 << 20;
    small.zstd_level = -7;
    let keys = sample_keys();
    let write_key = keys.to_write_key();
    let mut tree = sample_tree();
    let tree_bytes = tree.encode();
    let snapshot = sample_snapshot();
    let (pack, trailer) = sample_pack();
    let index = IndexRecord {
        packs: vec![IndexPack {
            id: Id::of_object(&pack),
            kind: PackKind::Data,
            size: pack.len() as u64 + 200,
            blobs: trailer.blobs.clone(),
        }],
    };
    let empty_pack = PackBuilder::new(PackKind::Tree, 0).finish().0;

    let mut frames = Vec::new();
    for raw in [
        Vec::new(),
        b"hello".to_vec(),
        b"apiVersion: v1\nkind: ConfigMap\n".repeat(40),
        pseudo_random(500, 9),
    ] {
        for how in [Compression::None, Compression::Zstd] {
            let stored = match how {
                Compression::None => raw.clone(),
                Compression::Zstd => zstd_bytes(&raw),
            };
            let mut input = (raw.len() as u32).to_le_bytes().to_vec();
            input.push(if how == Compression::Zstd { 1 } else { 0 });
            input.extend_from_slice(&stored);
            frames.push(input);
        }
    }

    let recipients = [identity().to_public()];
    let mut envelopes = Vec::new();
    for len in [0usize, 1, 100, 65536, 65537] {
        envelopes.push(envelope::encrypt(
            &pseudo_random(len, len as u64 + 1),
            &recipients,
        ));
    }
    envelopes.push(envelope::encrypt(&config.encode(), &recipients));
    envelopes.push(envelope::encrypt_with_passphrase(
        b"secret",
        FUZZ_PASSPHRASE,
        2,
    ));

    let mut chunker = Vec::new();
    for (selector, len) in [(0u8, 3000usize), (3, 5000), (9, 2000), (1, 100), (11, 0)] {
        let mut input = vec![selector, 16, 7, 1, 2, 3, 4, 5, 6, 7];
        input.extend_from_slice(&pseudo_random(len, selector as u64 + 5));
        chunker.push(input);
    }
    let mut zeros = vec![2u8, 0, 200, 0, 0, 0, 0, 0, 0, 0];
    zeros.extend_from_slice(&[0u8; 6000]);
    chunker.push(zeros);

    let records = vec![
        config.encode(),
        keys.encode(),
        tree_bytes.clone(),
        snapshot.encode(),
        index.encode(),
        pack[trailer_start(&pack)..pack.len() - 8].to_vec(),
        cairn_format::record::encode(cairn_format::record::RecordKind::Index, &vec![1u32, 2, 3]),
    ];

    vec![
        ("record", records),
        ("config", vec![config.encode(), small.encode()]),
        (
            "keys",
            vec![
                keys.encode(),
                write_key.encode(),
                keys::write_key_to_text(&keys, None).into_bytes(),
            ],
        ),
        ("pack", vec![pack, empty_pack]),
        (
            "index",
            vec![index.encode(), IndexRecord::default().encode()],
        ),
        (
            "tree",
            vec![
                tree_bytes,
                Tree::default().encode(),
                listed_tree(1),
                listed_tree(3),
            ],
        ),
        ("content_list", content_lists()),
        ("snapshot", vec![snapshot.encode()]),
        ("frame", frames),
        ("payload", envelopes.clone()),
        ("envelope", envelopes),
        ("chunker", chunker),
        ("gc", gc_records(&index)),
        ("bbolt", bbolt_databases()),
    ]
}

/// Lease and gc-marker records (the `gc` target decodes both).
fn gc_records(index: &IndexRecord) -> Vec<Vec<u8>> {
    use cairn_format::gc::{GcRecord, LeaseKind, LeaseRecord};
    let lease = |kind, seen| LeaseRecord {
        kind,
        host: "master-0".into(),
        pid: 4242,
        started_unix: 1_780_000_000,
        renewed_unix: 1_780_000_060,
        seen_markers: seen,
    };
    vec![
        lease(LeaseKind::Writer, None).encode(),
        lease(LeaseKind::Prune, Some(vec![Id([7; 32])])).encode(),
        GcRecord {
            created_unix: 1_780_000_100,
            packs: index.packs.clone(),
        }
        .encode(),
    ]
}

/// Small bbolt databases shaped like etcd's (512-byte pages): the two meta pages with their
/// FNV-1a checksums, a root leaf with the `key` bucket (and an inline `cluster` bucket), the
/// `key` bucket's leaf of two revisions, and a freelist, each with and without the options.
fn bbolt_databases() -> Vec<Vec<u8>> {
    const PS: usize = 512;
    fn page(id: u64, flags: u16, count: u16, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; PS];
        p[..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&flags.to_le_bytes());
        p[10..12].copy_from_slice(&count.to_le_bytes());
        p[16..16 + body.len()].copy_from_slice(body);
        p
    }
    fn leaf(entries: &[(&[u8], u32, Vec<u8>)]) -> Vec<u8> {
        let n = entries.len();
        let (mut elements, mut data) = (Vec::new(), Vec::new());
        for (i, (k, flags, v)) in entries.iter().enumerate() {
            let pos = (n * 16 + data.len() - i * 16) as u32;
            for x in [*flags, pos, k.len() as u32, v.len() as u32] {
                elements.extend_from_slice(&x.to_le_bytes());
            }
            data.extend_from_slice(k);
            data.extend_from_slice(v);
        }
        elements.extend_from_slice(&data);
        elements
    }
    let revision = |main: u64| {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0u64.to_be_bytes());
        k
    };
    let mut out = Vec::new();
    for freelist in [false, true] {
        for inline in [false, true] {
            let (r1, r2) = (revision(1), revision(2));
            let mut pages = vec![Vec::new(), Vec::new()];
            pages.push(page(
                2,
                0x02,
                2,
                &leaf(&[(&r1, 0, b"a".to_vec()), (&r2, 0, b"bb".to_vec())]),
            ));
            let mut entries: Vec<(&[u8], u32, Vec<u8>)> = Vec::new();
            if inline {
                let inner = leaf(&[(b"clusterVersion", 0, b"3.5.0".to_vec())]);
                let mut value = vec![0u8; 16];
                value.extend_from_slice(&page(0, 0x02, 1, &[])[..16]);
                value.extend_from_slice(&inner);
                entries.push((b"cluster", 1, value));
            }
            let mut key_bucket = 2u64.to_le_bytes().to_vec();
            key_bucket.extend_from_slice(&0u64.to_le_bytes());
            entries.push((b"key", 1, key_bucket));
            pages.push(page(3, 0x02, entries.len() as u16, &leaf(&entries)));
            let mut freelist_page = u64::MAX;
            if freelist {
                pages.push(page(4, 0x02, 0, &[]));
                pages.push(page(5, 0x10, 1, &4u64.to_le_bytes()));
                freelist_page = 5;
            }
            let high = pages.len() as u64;
            for (i, txid) in [(0usize, 10u64), (1, 9)] {
                let mut m = Vec::new();
                for x in [0xED0C_DAEDu32, 2, PS as u32, 0] {
                    m.extend_from_slice(&x.to_le_bytes());
                }
                for x in [3u64, 0, freelist_page, high, txid] {
                    m.extend_from_slice(&x.to_le_bytes());
                }
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in &m {
                    h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
                }
                m.extend_from_slice(&h.to_le_bytes());
                pages[i] = page(i as u64, 0x04, 0, &m);
            }
            out.push(pages.concat());
        }
    }
    out
}

fn trailer_start(pack: &[u8]) -> usize {
    let n = pack.len();
    cairn_format::pack::trailer_range(&pack[n - 8..], n as u64)
        .expect("own pack")
        .start as usize
}

fn zstd_bytes(raw: &[u8]) -> Vec<u8> {
    // Always a zstd frame, even for incompressible data (FrameCompressor would store it raw).
    zstd::bulk::compress(raw, 3).expect("zstd")
}

/// A self-contained list and one written relative to it.
fn content_lists() -> Vec<Vec<u8>> {
    use cairn_format::content_list::ContentList;
    let old: Vec<cairn_format::Id> = (0..8u8).map(|b| cairn_format::Id([b; 32])).collect();
    let mut new = old.clone();
    new[3] = cairn_format::Id([9; 32]);
    new.push(cairn_format::Id([10; 32]));
    vec![
        ContentList::full(&old).encode(),
        ContentList::delta(&new, (cairn_format::Id([7; 32]), &old)).encode(),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn bbolt_seeds_are_databases_the_inspector_accepts() {
        for db in super::bbolt_databases() {
            cairn_format::bbolt::inspect_bytes(&db).expect("a seed database");
        }
    }

    #[test]
    fn every_target_has_seeds() {
        for (target, inputs) in super::seeds() {
            assert!(!inputs.is_empty(), "{target}");
        }
    }
}
