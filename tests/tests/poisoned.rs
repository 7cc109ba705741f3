//! Poisoned repositories stay harmless: objects crafted by whoever can write the storage (with
//! a stolen write key, from the SPEC) end in a bounded error, never in unbounded memory or
//! work. Peak memory is measured per run from the kernel's accounting.

use cairn_e2e::rss::cairn_with_rss;
use cairn_e2e::*;
use cairn_format::record::{self, RecordKind};
use cairn_format::snapshot::{SnapshotStats, SourceKind};
use cairn_format::tree::Xattr;

/// The memory any command may take on these repositories (the real bound is lower).
const BOUND: u64 = 256 << 20;

fn run(fx: &Fixture, args: &[&str]) -> (Output, u64) {
    let env = fx.env();
    cairn_with_rss(&fx.id_args(args), &env_refs(&env))
}

#[test]
fn trees_of_empty_xattrs_cannot_exhaust_memory() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    // Three levels, each a tree with one entry carrying ~5 million empty extended attributes
    // (2 bytes each encoded, ~48 decoded): about 1.2 GiB decoded before this was bounded.
    let flood = |name: &[u8], sub: Option<cairn_format::Id>| {
        let mut n = match sub {
            Some(id) => dir_node(name, id),
            None => file_node(name, vec![], 0),
        };
        n.xattrs = vec![
            Xattr {
                name: Vec::new(),
                value: Vec::new(),
            };
            5_000_000
        ];
        raw_tree(vec![n])
    };
    let leaf = flood(b"f", None);
    let mid = flood(b"d2", Some(c.blob_id(&leaf)));
    let root = flood(b"d1", Some(c.blob_id(&mid)));
    let snap = c.inject_snapshot(&root, vec![leaf, mid], vec![]);
    for args in [
        vec!["ls", snap.as_str()],
        vec!["restore", snap.as_str(), "--target", s(&fx.path("t"))],
    ] {
        let (out, rss) = run(&fx, &args);
        out.code_is(1).stderr_has(&["extended attribute"]);
        assert!(rss < BOUND, "{args:?} peaked at {} MiB\n{out}", rss >> 20);
    }
    let (out, rss) = run(&fx, &["check"]);
    out.code_is(4);
    assert!(rss < BOUND, "check peaked at {} MiB", rss >> 20);
}

#[test]
fn trees_reused_under_many_names_cannot_run_without_end() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    // 27 trees, each naming the one below twice: 2^26 paths in a few kilobytes.
    let data = b"x".to_vec();
    let mut tree = raw_tree(vec![file_node(b"f", vec![c.blob_id(&data)], 1)]);
    let mut trees = Vec::new();
    for _ in 0..26 {
        let id = c.blob_id(&tree);
        let next = raw_tree(vec![dir_node(b"a", id), dir_node(b"b", id)]);
        trees.push(std::mem::replace(&mut tree, next));
    }
    let snap = c.inject_snapshot(&tree, trees, vec![data]);
    let start = std::time::Instant::now();
    let (out, _) = run(&fx, &["ls", &snap]);
    out.code_is(1)
        .stderr_has(&["more entries than its recorded counts allow"]);
    let (out, _) = run(&fx, &["check"]);
    out.code_is(4);
    assert!(out.stdout.contains("recorded counts allow"), "{out}");
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
}

/// `n` empty strings, serialised as a sequence without holding them.
struct EmptyStrings(usize);

impl serde::Serialize for EmptyStrings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0))?;
        for _ in 0..self.0 {
            seq.serialize_element("")?;
        }
        seq.end()
    }
}

/// The fields of a snapshot record, in order, with a flood of empty tags.
#[derive(serde::Serialize)]
struct TagFlood {
    time_ns: i64,
    host: String,
    username: String,
    source: SourceKind,
    paths: Vec<String>,
    tags: EmptyStrings,
    tree: cairn_format::Id,
    parent: Option<cairn_format::Id>,
    stats: SnapshotStats,
    program: String,
    facts: Vec<(String, String)>,
}

#[test]
fn a_snapshot_object_of_empty_tags_is_refused_not_loaded() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    write_file(&src.join("a"), b"a");
    fx.backup(&[&src]);
    let c = Crafter::new(&fx);
    // 40 MiB of empty tags: 1 byte each encoded, 24 decoded (1 GiB).
    let flood = TagFlood {
        time_ns: 1_700_000_000_000_000_000,
        host: "x".into(),
        username: "x".into(),
        source: SourceKind::Paths,
        paths: vec!["/x".into()],
        tags: EmptyStrings(40 << 20),
        tree: c.blob_id(b"none"),
        parent: None,
        stats: SnapshotStats::default(),
        program: "x".into(),
        facts: Vec::new(),
    };
    let bytes = record::encode(RecordKind::Snapshot, &flood);
    assert!(bytes.len() > 40 << 20);
    c.put_meta("snapshots", &bytes);
    // Listing reports it as damaged (exit 3) and goes on; a backup is not held up by it.
    let (out, rss) = run(&fx, &["snapshots"]);
    out.code_is(3);
    assert!(rss < BOUND, "snapshots peaked at {} MiB", rss >> 20);
    let env = fx.env();
    let (out, rss) = cairn_with_rss(&fx.wk_args(&["backup", s(&src)]), &env_refs(&env));
    out.ok();
    assert!(rss < BOUND, "backup peaked at {} MiB", rss >> 20);
}

#[test]
fn planted_key_objects_with_heavy_scrypt_cost_nothing() {
    let tmp = scratch();
    let repo = tmp.path().join("repo");
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    cairn(
        &["-r", s(&repo), "--passphrase-file", s(&pass), "init"],
        &[],
    )
    .ok();
    // Planted without any key: any bytes under keys/ encrypted to some passphrase, at a work
    // factor of 2^19 (512 MiB and a second of scrypt if cairn tried it).
    let planted = cairn_format::envelope::encrypt_with_passphrase(b"nothing", "whatever", 19);
    let name = format!("keys/{}", cairn_format::Id::of_object(&planted));
    std::fs::write(repo.join(&name), &planted).unwrap();
    let args = ["-r", s(&repo), "--passphrase-file", s(&pass), "snapshots"];
    let (out, rss) = cairn_with_rss(&args, &[]);
    out.ok().stderr_has(&[&name, "work factor 2^19"]);
    // The genuine key's own scrypt (2^18) takes 256 MiB; the planted one would add 512.
    assert!(rss < 450 << 20, "peaked at {} MiB", rss >> 20);
}

#[test]
fn packs_in_no_index_with_absurd_trailers_are_damage_for_check_read_data() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    write_file(&src.join("a"), b"a");
    fx.backup(&[&src]);
    // A pack planted under its correct name whose trailer claims 2^60 blobs of 4 GiB.
    let keys = fx.write_key_record();
    let mut plain = b"not a pack body".to_vec();
    plain.extend_from_slice(&(1u64 << 60).to_le_bytes());
    plain.extend_from_slice(&u32::MAX.to_le_bytes());
    let ct = cairn_format::envelope::encrypt(&plain, &repo_objects::meta_recipients(&keys));
    let hex = cairn_format::Id::of_object(&ct).to_hex();
    let name = format!("tree/{}/{hex}", &hex[..2]);
    fx.store.write(&name, &ct);
    // The structure check notes it; reading the data calls it damage and names it.
    fx.wk(&["check"]).ok();
    let out = fx.wk(&["check", "--read-data"]);
    out.code_is(4);
    assert!(
        out.stdout.contains(&name) && out.stdout.contains("in no index"),
        "{out}"
    );
    fx.id(&["check", "--read-data"]).code_is(4);
}
