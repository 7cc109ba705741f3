//! `cairn check` against damaged repositories: objects of every kind flipped, truncated or
//! deleted. For each: which mode finds it (plain structure check, `--read-data`, a subset,
//! `--no-key`, the write key), the exit code (0 clean, 4 damage, 3 not all checked, 1 could not
//! run, 2 usage), and that the report names the object, the snapshots and the files it
//! affects, while the unaffected snapshot still restores byte-exact.
//!
//! Every repository holds two snapshots backed up one after the other from separate
//! directories, so each has its own data pack, tree pack and index object.

use cairn_e2e::repo_objects::{encrypt_meta, read_meta, unreleased_leases};
use cairn_e2e::*;
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::Id;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;

const KB: usize = 1000;

/// One snapshot and the objects its backup added.
struct Snap {
    id: String,
    src: PathBuf,
    data: String,
    tree: String,
    index: String,
}

impl Snap {
    /// The snapshot object.
    fn object(&self) -> String {
        format!("snapshots/{}", self.id)
    }

    /// Its files as check lists them: `<short id>:<absolute path>`.
    fn files(&self) -> BTreeSet<String> {
        ["disk.bin", "conf/manifest.yaml"]
            .iter()
            .map(|f| format!("{}:{}", &self.id[..8], s(&self.src.join(f))))
            .collect()
    }

    /// Its root directory as check lists it when no tree below can be read.
    fn root(&self) -> BTreeSet<String> {
        BTreeSet::from([format!("{}:/", &self.id[..8])])
    }
}

/// A repository with snapshots `a` and `b`.
struct Two {
    fx: Fixture,
    a: Snap,
    b: Snap,
}

/// The one object below `sub` that is not in `before`.
fn new_object(fx: &Fixture, sub: &str, before: &BTreeSet<String>) -> String {
    let new: Vec<String> = fx
        .store
        .names(sub)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "one backup should add one object to {sub}/: {new:?}"
    );
    new.into_iter().next().expect("one")
}

fn back_up(fx: &Fixture, name: &str, seed: u64) -> Snap {
    let src = fx.path(name);
    write_file(&src.join("disk.bin"), &random_bytes(seed, 300 * KB));
    write_file(
        &src.join("conf/manifest.yaml"),
        &text_bytes(seed + 1, 40 * KB),
    );
    let before: BTreeSet<String> = fx.store.names("").into_iter().collect();
    let id = Fixture::snap_id(&fx.backup(&[&src]));
    Snap {
        data: new_object(fx, "data", &before),
        tree: new_object(fx, "tree", &before),
        index: new_object(fx, "index", &before),
        id,
        src,
    }
}

fn two(backend: Backend) -> Two {
    let fx = Fixture::on(backend);
    let a = back_up(&fx, "a", 11);
    let b = back_up(&fx, "b", 22);
    Two { fx, a, b }
}

/// `cairn --json check ARGS` with the identity.
fn check(fx: &Fixture, args: &[&str]) -> Output {
    let mut all = vec!["--json", "check"];
    all.extend_from_slice(args);
    fx.id(&all)
}

/// `cairn --json check ARGS` with the write key.
fn check_wk(fx: &Fixture, args: &[&str]) -> Output {
    let mut all = vec!["--json", "check"];
    all.extend_from_slice(args);
    fx.wk(&all)
}

/// `cairn --json check --no-key` with no credentials at all (only the storage's own).
fn check_no_key(fx: &Fixture) -> Output {
    fx.run(&["-r", &fx.store.location(), "--json", "check", "--no-key"])
}

fn problems(v: &Value) -> &Vec<Value> {
    v["problems"].as_array().expect("problems array")
}

/// The problem reported for `object`; panics with the report unless there is exactly one.
fn problem<'a>(v: &'a Value, object: &str) -> &'a Value {
    let found: Vec<&Value> = problems(v)
        .iter()
        .filter(|p| p["object"] == object)
        .collect();
    assert_eq!(found.len(), 1, "one problem for {object} expected: {v:#}");
    found[0]
}

/// The objects named by the report's problems.
fn objects(v: &Value) -> BTreeSet<String> {
    problems(v)
        .iter()
        .map(|p| p["object"].as_str().expect("object").to_string())
        .collect()
}

fn text<'a>(p: &'a Value, key: &str) -> &'a str {
    p[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string: {p:#}"))
}

/// Damage found: exit 4, `clean` false, and the problems name exactly `objects`; returns the
/// report.
#[track_caller]
fn damaged(out: &Output, objects_named: &[&str]) -> Value {
    out.code_is(4);
    let v = out.json();
    assert_eq!(v["clean"], false, "{v:#}");
    let want: BTreeSet<String> = objects_named.iter().map(|o| o.to_string()).collect();
    assert_eq!(objects(&v), want, "damaged objects: {v:#}");
    v
}

/// No damage: exit 0, `clean` true, no problems; returns the report.
#[track_caller]
fn clean(out: &Output) -> Value {
    out.ok();
    let v = out.json();
    assert_eq!(v["clean"], true, "{v:#}");
    assert!(problems(&v).is_empty(), "{v:#}");
    v
}

/// The problem for `object` affects exactly snapshot `hit`, the files `files`, and says what
/// is wrong (`cause` contains `why`) and what to do (`hint` contains `todo`).
#[track_caller]
fn affects(v: &Value, object: &str, hit: &Snap, files: BTreeSet<String>, why: &str, todo: &str) {
    let p = problem(v, object);
    assert_eq!(
        strs(p, "snapshots"),
        BTreeSet::from([hit.id.clone()]),
        "{object} affects snapshot {} only: {p:#}",
        hit.id
    );
    assert_eq!(num(p, "files_affected"), files.len() as u64, "{p:#}");
    assert_eq!(strs(p, "files"), files, "{p:#}");
    assert!(text(p, "cause").contains(why), "cause of {object}: {p:#}");
    assert!(text(p, "hint").contains(todo), "hint for {object}: {p:#}");
}

/// Snapshot `s` restores byte-exact.
fn restores(fx: &Fixture, s: &Snap) {
    let target = fx.path(&format!("restore-{}", &s.id[..8]));
    let _ = std::fs::remove_dir_all(&target);
    fx.restore(&s.id, &target, &[]).ok();
    let got = Fixture::restored(&target, &s.src);
    let files = files_below(&s.src);
    assert_eq!(files.len(), 2);
    for f in files {
        let rel = f.strip_prefix(&s.src).expect("below");
        assert_eq!(
            std::fs::read(got.join(rel)).ok(),
            std::fs::read(&f).ok(),
            "{} differs after restore of {}",
            rel.display(),
            s.id
        );
    }
}

/// The pack id in an object name `data/ab/ab…`.
fn pack_id(object: &str) -> &str {
    object.rsplit('/').next().expect("id")
}

/// Which of `m` groups `--read-data-subset n/m` puts a pack in (1-based): the first eight
/// bytes of its id, little-endian, modulo `m`.
fn group(object: &str, m: u64) -> u64 {
    let id = hex::decode(pack_id(object)).expect("hex pack id");
    u64::from_le_bytes(id[..8].try_into().expect("8 bytes")) % m + 1
}

// ---------------------------------------------------------------------------------------------
// Clean repositories
// ---------------------------------------------------------------------------------------------

fn clean_repository_passes_every_mode(backend: Backend) {
    let t = two(backend);
    let fx = &t.fx;
    let packs = repo_objects::packs(&fx.store);
    assert_eq!(packs.len(), 4);

    let v = clean(&check(fx, &[]));
    assert_eq!(num(&v, "snapshots"), 2, "{v:#}");
    assert_eq!(num(&v, "packs"), 4, "{v:#}");
    assert!(num(&v, "blobs") >= 6, "{v:#}");
    assert_eq!(
        num(&v, "packs_read"),
        0,
        "plain check reads no pack whole: {v:#}"
    );
    assert_eq!(
        num(&v, "objects_named"),
        1,
        "the key object is verified: {v:#}"
    );
    assert!(strs(&v, "notes").is_empty(), "{v:#}");

    let v = clean(&check(fx, &["--read-data"]));
    assert_eq!(num(&v, "packs_read"), 4, "{v:#}");
    assert_eq!(num(&v, "blobs_verified"), num(&v, "blobs"), "{v:#}");
    assert_eq!(
        num(&v, "bytes_read"),
        packs.values().sum::<u64>(),
        "every pack read whole: {v:#}"
    );

    // Auditors: no key at all. Every object but config is named by the blake3 of its bytes.
    // (config and policy objects are not content-addressed.)
    let v = clean(&check_no_key(fx));
    let all = fx.store.list("");
    // (Lease objects, released ones left for prune, are not content-addressed either.)
    assert!(unreleased_leases(&fx.store).is_empty(), "{all:?}");
    let named: Vec<_> = all
        .iter()
        .filter(|(n, _)| n != "config" && !n.starts_with("policy/") && !n.starts_with("locks/"))
        .collect();
    assert_eq!(num(&v, "objects_named"), named.len() as u64, "{v:#}");
    let bytes: u64 = named.iter().map(|(_, len)| *len).sum();
    assert_eq!(num(&v, "bytes_read"), bytes, "{v:#}");

    // A write key checks structure, and with --read-data verifies tree packs in full and data
    // packs by their names.
    let v = clean(&check_wk(fx, &[]));
    assert_eq!(num(&v, "snapshots"), 2, "{v:#}");
    let v = clean(&check_wk(fx, &["--read-data"]));
    assert_eq!(num(&v, "packs_read"), 4, "{v:#}");
    let verified = num(&v, "blobs_verified");
    assert!(
        verified >= 2 && verified < num(&v, "blobs"),
        "only tree blobs are decrypted with a write key: {v:#}"
    );
    assert!(
        strs(&v, "notes").iter().any(|n| n.contains("identity")),
        "the write key's limits are not said: {v:#}"
    );

    let out = fx.id(&["check"]);
    out.ok();
    assert!(
        out.stdout.contains("structure: 2 snapshots, 4 packs")
            && out.stdout.contains("no damage found")
            && !out.stdout.contains("DAMAGED"),
        "{out}"
    );
    let out = fx.run(&["-r", &fx.store.location(), "check", "--no-key"]);
    out.ok();
    assert!(out.stdout.contains("no damage found"), "{out}");
}
backend_tests!(clean_repository_passes_every_mode);

// ---------------------------------------------------------------------------------------------
// Data packs
// ---------------------------------------------------------------------------------------------

fn flipped_data_pack_is_found_by_reading_and_by_names(backend: Backend) {
    let t = two(backend);
    let fx = &t.fx;
    let pack = &t.a.data;
    fx.store.flip_byte(pack);

    // Same size, so the structure is intact: a plain check reads no data pack and cannot
    // see it.
    let v = clean(&check(fx, &[]));
    assert_eq!(num(&v, "packs_read"), 0, "{v:#}");

    let v = damaged(&check(fx, &["--read-data"]), &[pack]);
    affects(
        &v,
        pack,
        &t.a,
        t.a.files(),
        "does not match its name",
        "repair snapshots",
    );
    assert_eq!(
        num(&v, "packs_read"),
        3,
        "the other packs are intact: {v:#}"
    );

    let v = damaged(&check_no_key(fx), &[pack]);
    let p = problem(&v, pack);
    assert!(
        text(p, "cause").contains("does not match its name"),
        "{v:#}"
    );
    assert!(text(p, "hint").contains("repair snapshots"), "{v:#}");

    // The write key cannot decrypt the pack, but still sees that its bytes changed.
    let v = damaged(&check_wk(fx, &["--read-data"]), &[pack]);
    affects(
        &v,
        pack,
        &t.a,
        t.a.files(),
        "does not match",
        "repair snapshots",
    );

    // Text report: object, snapshot and files.
    let out = fx.id(&["check", "--read-data"]);
    out.code_is(4);
    assert!(
        out.stdout.contains(&format!("DAMAGED {pack}: "))
            && out
                .stdout
                .contains(&format!("affects snapshots {} (2 files)", &t.a.id[..8]))
            && t.a.files().iter().all(|f| out.stdout.contains(f.as_str()))
            && !out.stdout.contains(&t.b.id[..8])
            && out.stdout.contains("1 damaged object\n"),
        "{out}"
    );

    restores(fx, &t.b);
    // Restoring the damaged snapshot stops, naming the pack.
    let target = fx.path("restore-a");
    fx.restore(&t.a.id, &target, &[])
        .code_is(1)
        .stderr_has(&[pack]);
}
backend_tests!(flipped_data_pack_is_found_by_reading_and_by_names);

fn truncated_or_deleted_data_pack_is_found_by_plain_check(backend: Backend) {
    let t = two(backend);
    let fx = &t.fx;
    let pack = &t.a.data;
    let size = fx.store.read(pack).expect("pack").len();
    fx.store.truncate(pack, size / 2);
    let v = damaged(&check(fx, &[]), &[pack]);
    affects(&v, pack, &t.a, t.a.files(), "truncated", "repair snapshots");
    assert!(
        text(problem(&v, pack), "cause").contains(&format!("{} bytes stored", size / 2)),
        "{v:#}"
    );
    let v = damaged(&check_wk(fx, &[]), &[pack]);
    affects(&v, pack, &t.a, t.a.files(), "truncated", "repair snapshots");
    damaged(&check_no_key(fx), &[pack]);

    fx.store.delete(pack);
    let v = damaged(&check(fx, &[]), &[pack]);
    affects(&v, pack, &t.a, t.a.files(), "missing", "repair snapshots");
    // --read-data reports the same pack once, and reads the other three.
    let v = damaged(&check(fx, &["--read-data"]), &[pack]);
    affects(&v, pack, &t.a, t.a.files(), "missing", "repair snapshots");
    assert_eq!(num(&v, "packs_read"), 3, "{v:#}");

    restores(fx, &t.b);
}
backend_tests!(truncated_or_deleted_data_pack_is_found_by_plain_check);

/// Rewrite, as a writer with the write key could, the first index object that lists `pack` (a
/// data pack): `change` edits that pack's entries. The old index object is replaced.
fn forge_index(fx: &Fixture, pack: &str, change: impl FnOnce(&mut IndexPack)) {
    for name in fx.store.names("index") {
        let plain = read_meta(fx, &fx.store, &name).expect("index decrypts");
        let mut rec = IndexRecord::decode(&plain).expect("index decodes");
        let Some(entry) = rec
            .packs
            .iter_mut()
            .find(|p| p.id.to_hex() == pack_id(pack))
        else {
            continue;
        };
        change(entry);
        let ct = encrypt_meta(fx, &rec.encode());
        fx.store.delete(&name);
        fx.store
            .write(&format!("index/{}", Id::of_object(&ct)), &ct);
        return;
    }
    panic!("no index object lists {pack}");
}

/// An index whose entries disagree with the pack's trailer: the structure is intact, reading
/// the pack finds it, and the advice is to rebuild the index from the trailers (the pack is
/// intact), not to drop files.
#[test]
fn index_that_disagrees_with_the_pack_is_found_by_reading() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let pack = &t.b.data;

    // Two blobs' locations swapped.
    forge_index(fx, pack, |p| {
        assert!(p.blobs.len() >= 2, "{p:?}");
        let (x, y) = (p.blobs[0].id, p.blobs[1].id);
        p.blobs[0].id = y;
        p.blobs[1].id = x;
    });
    clean(&check(fx, &[]));
    // The pack is named: its files cannot be restored as indexed.
    let v = damaged(&check(fx, &["--read-data"]), &[pack]);
    affects(
        &v,
        pack,
        &t.b,
        t.b.files(),
        "elsewhere than the pack's trailer",
        "repair index",
    );
    // Every stored object still matches its name.
    clean(&check_no_key(fx));
    restores(fx, &t.a);
    fx.id(&["repair", "index"]).ok();
    clean(&check(fx, &["--read-data"]));
    restores(fx, &t.b);

    // An entry for a blob the pack does not hold.
    let ghost = Id([7; 32]);
    forge_index(fx, pack, |p| {
        let mut entry = p.blobs[0];
        entry.id = ghost;
        p.blobs.push(entry);
    });
    clean(&check(fx, &[]));
    let v = damaged(&check(fx, &["--read-data"]), &[pack]);
    let p = problem(&v, pack);
    let cause = format!("indexed blob {ghost} is not in the pack's trailer");
    assert!(text(p, "cause").contains(&cause), "{v:#}");
    assert!(text(p, "hint").contains("repair index"), "{v:#}");
    fx.id(&["repair", "index"]).ok();
    clean(&check(fx, &["--read-data"]));
}

// ---------------------------------------------------------------------------------------------
// Tree packs
// ---------------------------------------------------------------------------------------------

fn damaged_tree_pack_is_found_and_named(backend: Backend) {
    let t = two(backend);
    let fx = &t.fx;
    let pack = &t.a.tree;
    fx.store.flip_byte(pack);

    // A plain check reads every tree: it names the pack, the snapshot and the directory
    // whose listing is lost.
    let v = damaged(&check(fx, &[]), &[pack]);
    affects(&v, pack, &t.a, t.a.root(), "damaged", "repair snapshots");
    let v = damaged(&check_wk(fx, &[]), &[pack]);
    affects(&v, pack, &t.a, t.a.root(), "damaged", "repair snapshots");

    // Reading it whole: its bytes do not match its name.
    let v = damaged(&check(fx, &["--read-data"]), &[pack]);
    affects(
        &v,
        pack,
        &t.a,
        t.a.root(),
        "does not match its name",
        "repair snapshots",
    );
    damaged(&check_wk(fx, &["--read-data"]), &[pack]);
    damaged(&check_no_key(fx), &[pack]);

    restores(fx, &t.b);

    let size = fx.store.read(pack).expect("pack").len();
    fx.store.truncate(pack, size - 1);
    let v = damaged(&check(fx, &[]), &[pack]);
    affects(&v, pack, &t.a, t.a.root(), "truncated", "repair snapshots");

    fx.store.delete(pack);
    let v = damaged(&check(fx, &[]), &[pack]);
    affects(&v, pack, &t.a, t.a.root(), "missing", "repair snapshots");
    restores(fx, &t.b);
}
backend_tests!(damaged_tree_pack_is_found_and_named);

// ---------------------------------------------------------------------------------------------
// Index, snapshot, key and config objects
// ---------------------------------------------------------------------------------------------

#[test]
fn damaged_or_lost_index_is_found_and_repair_index_fixes_it() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let index = &t.a.index;
    fx.store.flip_byte(index);

    // The index object is named; the blobs it listed are now in no index: snapshot a is
    // affected (its root tree is gone), b is not. The advice is to rebuild the index, not to
    // drop files whose data is intact.
    let check_lost = |v: &Value| {
        let lost: Vec<&Value> = problems(v)
            .iter()
            .filter(|p| text(p, "object").starts_with("blob "))
            .collect();
        assert_eq!(lost.len(), 1, "{v:#}");
        let p = lost[0];
        assert_eq!(
            strs(p, "snapshots"),
            BTreeSet::from([t.a.id.clone()]),
            "{p:#}"
        );
        assert_eq!(strs(p, "files"), t.a.root(), "{p:#}");
        assert!(
            text(p, "cause").contains("not in the repository index"),
            "{p:#}"
        );
        assert!(text(p, "hint").contains("repair index"), "{p:#}");
        assert!(
            strs(v, "notes")
                .iter()
                .any(|n| n.contains("2 stored packs are in no index")),
            "{v:#}"
        );
    };
    let out = check(fx, &[]);
    out.code_is(4);
    let v = out.json();
    let p = problem(&v, index);
    assert!(
        text(p, "cause").contains("does not match its name"),
        "{v:#}"
    );
    assert!(text(p, "hint").contains("repair index"), "{v:#}");
    assert_eq!(problems(&v).len(), 2, "{v:#}");
    check_lost(&v);
    let out = check_wk(fx, &["--read-data"]);
    out.code_is(4);
    let v = out.json();
    problem(&v, index);
    check_lost(&v);
    let v = damaged(&check_no_key(fx), &[index]);
    assert!(
        text(problem(&v, index), "hint").contains("repair index"),
        "{v:#}"
    );

    fx.store.delete(index);
    let out = check(fx, &[]);
    out.code_is(4);
    let v = out.json();
    assert_eq!(problems(&v).len(), 1, "{v:#}");
    check_lost(&v);
    // Without the index the packs are only stored objects: names still match.
    clean(&check_no_key(fx));

    fx.id(&["repair", "index"]).ok();
    let v = clean(&check(fx, &["--read-data"]));
    assert_eq!(num(&v, "packs_read"), 4, "{v:#}");
    restores(fx, &t.a);
    restores(fx, &t.b);
}

#[test]
fn damaged_snapshot_object_is_named_and_the_other_restores() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let name = t.a.object();
    let original = fx.store.read(&name).expect("snapshot");
    fx.store.flip_byte(&name);
    for out in [
        check(fx, &[]),
        check_wk(fx, &[]),
        check(fx, &["--read-data"]),
    ] {
        let v = damaged(&out, &[&name]);
        assert!(
            text(problem(&v, &name), "cause").contains("does not match its name"),
            "{v:#}"
        );
        assert_eq!(num(&v, "snapshots"), 1, "only b is readable: {v:#}");
    }
    damaged(&check_no_key(fx), &[&name]);
    restores(fx, &t.b);

    fx.store.write(&name, &original[..original.len() / 2]);
    damaged(&check(fx, &[]), &[&name]);
    damaged(&check_no_key(fx), &[&name]);

    // A deleted snapshot object is a forgotten snapshot, not damage: its data is unused.
    fx.store.delete(&name);
    let v = clean(&check(fx, &["--read-data"]));
    assert_eq!(num(&v, "snapshots"), 1, "{v:#}");
}

#[test]
fn damaged_or_lost_key_object_is_named() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let keys = fx.store.names("keys");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    let original = fx.store.read(key).expect("key");
    fx.store.flip_byte(key);

    // The identity opens the repository through its key object: check cannot go further
    // than the names, and reports the damage they show.
    let v = damaged(&check(fx, &[]), &[key]);
    assert!(
        text(problem(&v, key), "hint").contains("copy of the repository"),
        "{v:#}"
    );
    // A write key needs no key object, but must not call the repository clean when the
    // identity can no longer open it.
    let v = damaged(&check_wk(fx, &[]), &[key]);
    let p = problem(&v, key);
    assert!(
        text(p, "cause").contains("does not match its name"),
        "{v:#}"
    );
    assert!(text(p, "hint").contains("copy of the repository"), "{v:#}");
    let v = damaged(&check_no_key(fx), &[key]);
    assert!(
        text(problem(&v, key), "hint").contains("copy of the repository"),
        "deleting the only key object is no advice: {v:#}"
    );

    fx.store.delete(key);
    check(fx, &[])
        .code_is(1)
        .stderr_has(&["0 key objects tried"]);
    let v = damaged(&check_wk(fx, &[]), &["keys"]);
    assert!(
        text(problem(&v, "keys"), "cause").contains("no key objects"),
        "{v:#}"
    );

    fx.store.write(key, &original);
    clean(&check(fx, &["--read-data"]));
    clean(&check_wk(fx, &[]));
}

#[test]
fn damaged_or_lost_config_is_reported_by_check() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let original = fx.store.read("config").expect("config");

    // config is plaintext and not named by a hash. A flipped byte is caught by the keys bound
    // to the repository id it holds, or by decoding.
    fx.store.flip_byte("config");
    for out in [check(fx, &[]), check_wk(fx, &["--read-data"])] {
        out.code_is(1)
            .stderr_has(&["config", "copy of the repository"]);
        assert!(out.stdout.is_empty(), "{out}");
    }

    // A config that no longer decodes is damage, with a key or without: the repository
    // cannot be opened, so the names are checked and the config reported.
    fx.store.truncate("config", 10);
    for out in [check(fx, &[]), check_wk(fx, &[]), check_no_key(fx)] {
        let v = damaged(&out, &["config"]);
        assert!(
            text(problem(&v, "config"), "hint").contains("copy of the repository"),
            "{v:#}"
        );
        assert!(num(&v, "objects_named") >= 9, "{v:#}");
    }

    fx.store.delete("config");
    for out in [check(fx, &[]), check_wk(fx, &[]), check_no_key(fx)] {
        out.code_is(1).stderr_has(&["not a cairn repository"]);
    }

    fx.store.write("config", &original);
    clean(&check(fx, &[]));
}

#[test]
fn check_of_a_missing_repository_could_not_run() {
    let fx = Fixture::new();
    let missing = fx.path("nowhere");
    let out = fx.run(&["-r", s(&missing), "check", "--no-key"]);
    out.code_is(1)
        .stderr_has(&["nowhere", "not a cairn repository"]);
    let out = fx.run(&["-r", s(&missing), "-i", s(&fx.identity), "check"]);
    out.code_is(1).stderr_has(&["nowhere"]);
}

/// A pack the storage refuses to serve (archived to a cold storage class by a lifecycle rule)
/// is not damage: check says it could not run and names the object, and does not advise
/// dropping the files.
#[test]
fn storage_refusing_a_read_is_not_damage() {
    let t = two(Backend::S3);
    let fx = &t.fx;
    let pack = &t.a.tree;
    let bytes = fx.store.read(pack).expect("pack");
    put_archived(fx, pack, &bytes);

    for out in [
        check(fx, &[]),
        check_wk(fx, &[]),
        check(fx, &["--read-data"]),
        check_no_key(fx),
    ] {
        out.code_is(1).stderr_has(&[pack, "InvalidObjectState"]);
        assert!(!out.stdout.contains("repair"), "{out}");
    }

    fx.store.write(pack, &bytes);
    clean(&check(fx, &["--read-data"]));

    // The same for the index and snapshot objects every command reads first.
    for name in [&t.a.index, &t.a.object()] {
        let bytes = fx.store.read(name).expect("object");
        put_archived(fx, name, &bytes);
        for out in [check(fx, &[]), check_wk(fx, &[])] {
            out.code_is(1).stderr_has(&[name, "InvalidObjectState"]);
            assert!(!out.stdout.contains("repair"), "{out}");
        }
        fx.store.write(name, &bytes);
    }
    clean(&check(fx, &["--read-data"]));
}

/// Store `bytes` as object `name` of the fixture's S3 repository in the GLACIER storage
/// class: listed with its size, but every GET is refused (403 InvalidObjectState).
fn put_archived(fx: &Fixture, name: &str, bytes: &[u8]) {
    let Store::S3 { bucket, prefix } = &fx.store else {
        panic!("S3 repositories only")
    };
    let key = if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    };
    let addr = s3::shared().addr();
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to moto");
    let head = format!(
        "PUT /{bucket}/{key} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nx-amz-storage-class: GLACIER\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    conn.write_all(head.as_bytes()).expect("send");
    conn.write_all(bytes).expect("send");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let listed = fx.store.list("").into_iter().find(|(n, _)| n == name);
    assert_eq!(listed, Some((name.to_string(), bytes.len() as u64)));
}

// ---------------------------------------------------------------------------------------------
// Subsets, usage, report shape
// ---------------------------------------------------------------------------------------------

#[test]
fn read_data_subsets_split_the_packs_by_id_without_overlap() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let pack = &t.a.data;
    fx.store.flip_byte(pack);
    let packs = repo_objects::packs(&fx.store);
    for m in [1u64, 2, 3] {
        let mut found = 0;
        let mut read = 0;
        for n in 1..=m {
            let intact = packs
                .keys()
                .filter(|p| *p != pack && group(p, m) == n)
                .count() as u64;
            let out = check(fx, &["--read-data-subset", &format!("{n}/{m}")]);
            let v = out.json();
            assert_eq!(num(&v, "packs_read"), intact, "{n}/{m}: {v:#}");
            read += num(&v, "packs_read");
            if group(pack, m) == n {
                found += 1;
                damaged(&out, &[pack]);
                affects(&v, pack, &t.a, t.a.files(), "does not match", "repair");
            } else {
                clean(&out);
            }
        }
        assert_eq!(
            found, 1,
            "exactly one of the {m} groups holds the damaged pack"
        );
        assert_eq!(read, 3, "the {m} groups read every intact pack once");
    }
    let v = damaged(&check(fx, &["--read-data-subset", "100%"]), &[pack]);
    assert_eq!(num(&v, "packs_read"), 3, "{v:#}");
    // A random share reads some of the packs, never more than all.
    let v = check(fx, &["--read-data-subset", "50%"]).json();
    assert!(num(&v, "packs_read") <= 3, "{v:#}");
}

#[test]
fn bad_subsets_and_conflicting_flags_are_usage_errors() {
    let fx = Fixture::new();
    for (bad, says) in [
        ("0%", "more than 0%"),
        ("101%", "at most 100%"),
        ("-5%", "at most 100%"),
        ("4/3", "between 1/3 and 3/3"),
        ("0/3", "between 1/3 and 3/3"),
        ("1/0", "between"),
        ("abc", "expected a percentage"),
        ("1/3/4", "not a number"),
        ("%", "not a percentage"),
        ("x/3", "not a number"),
    ] {
        let out = fx.id(&["check", &format!("--read-data-subset={bad}")]);
        out.code_is(2).stderr_has(&[bad, says]);
        assert!(out.stdout.is_empty(), "{out}");
    }
    fx.id(&["check", "--read-data-subset"]).code_is(2);
    fx.id(&["check", "--read-data", "--read-data-subset", "1/2"])
        .code_is(2)
        .stderr_has(&["--read-data"]);
    fx.id(&["check", "--no-key", "--read-data"])
        .code_is(2)
        .stderr_has(&["--no-key"]);
    fx.id(&["check", "--no-key", "--read-data-subset", "1/2"])
        .code_is(2)
        .stderr_has(&["--no-key"]);
    fx.id(&["check", "--bogus"]).code_is(2);
    // The smallest valid share still runs.
    clean(&check(&fx, &["--read-data-subset", "0.5%"]));
}

/// A snapshot object a newer cairn wrote (its record version above this one's, sealed and
/// named as cairn seals and names them) is not damage: `check` lists it as NOT CHECKED and
/// exits 3, `latest` is refused with the upgrade as the way out (not `forget`), and the other
/// snapshots stay usable by id.
#[test]
fn a_snapshot_a_newer_cairn_wrote_is_not_checked_and_not_damage() {
    let Two { fx, a, b } = two(Backend::Local);
    let mut record = read_meta(&fx, &fx.store, &b.object()).expect("b's record");
    assert_eq!(&record[..8], b"cairnS\x01\x00", "snapshot record header");
    record[6] = 2;
    let ct = encrypt_meta(&fx, &record);
    let newer = format!("snapshots/{}", Id::of_object(&ct));
    fx.store.write(&newer, &ct);
    fx.store.delete(&b.object());

    let out = check(&fx, &["--read-data"]);
    assert_eq!(out.code, 3, "{out}");
    let v = out.json();
    assert_eq!(v["clean"], true, "{out}");
    assert_eq!(v["problems"], serde_json::json!([]), "{out}");
    let unchecked = v["unchecked"].as_array().expect("unchecked");
    assert_eq!(unchecked.len(), 1, "{out}");
    assert_eq!(unchecked[0]["object"], newer.as_str(), "{out}");
    let cause = unchecked[0]["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains("newer cairn") && cause.contains("version 2") && !cause.contains("damage"),
        "{out}"
    );
    let text = fx.id(&["check"]);
    assert_eq!(text.code, 3, "{text}");
    assert!(
        text.stdout.contains(&format!("NOT CHECKED {newer}"))
            && text.stdout.contains("no damage found")
            && !text.stdout.contains("DAMAGED"),
        "{text}"
    );

    let latest = fx.id(&["ls", "latest"]);
    latest.failed().stderr_has(&[
        "cannot tell which snapshot is the latest",
        &newer,
        "newer cairn",
    ]);
    assert!(
        !latest.stderr.contains("forget") && !latest.stderr.contains("damage"),
        "{latest}"
    );
    fx.id(&["ls", &a.id]).ok();
    // forget leaves it alone and says why; by its id it is refused, with the upgrade as advice.
    let out = fx.id(&["--json", "forget", "--keep-last", "5", "--dry-run"]);
    assert_eq!(out.code, 3, "{out}");
    let left = &out.json()["damaged"];
    assert_eq!(left[0]["path"], newer.as_str(), "{out}");
    assert_eq!(left[0]["newer"], true, "{out}");
    let id = newer.trim_start_matches("snapshots/");
    let out = fx.id(&["forget", id]);
    out.failed().stderr_has(&["newer"]);
    assert!(fx.store.exists(&newer));
}

/// The `--json` report monitoring relies on: these fields, these types, damaged or not, in
/// every mode.
#[test]
fn json_report_has_a_stable_shape() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    fx.store.flip_byte(&t.a.data);
    let top = BTreeSet::from(
        [
            "clean",
            "objects_named",
            "snapshots",
            "packs",
            "blobs",
            "packs_read",
            "bytes_read",
            "blobs_verified",
            "notes",
            "problems",
            "unchecked",
        ]
        .map(String::from),
    );
    let fields = BTreeSet::from(
        [
            "object",
            "cause",
            "hint",
            "snapshots",
            "files",
            "files_affected",
        ]
        .map(String::from),
    );
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    for (out, has_problems) in [
        (check(fx, &[]), false),
        (check(fx, &["--read-data"]), true),
        (check_wk(fx, &["--read-data"]), true),
        (check_no_key(fx), true),
    ] {
        let v = out.json();
        let keys: BTreeSet<String> = v.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys, top, "{out}");
        assert_eq!(v["clean"].as_bool(), Some(!has_problems), "{out}");
        assert!(
            v["unchecked"].as_array().is_some_and(|a| a.is_empty()),
            "{out}"
        );
        assert_eq!(out.code, if has_problems { 4 } else { 0 }, "{out}");
        for k in [
            "objects_named",
            "snapshots",
            "packs",
            "blobs",
            "packs_read",
            "bytes_read",
            "blobs_verified",
        ] {
            num(&v, k);
        }
        strs(&v, "notes");
        assert_eq!(problems(&v).is_empty(), !has_problems, "{out}");
        for p in problems(&v) {
            let keys: BTreeSet<String> = p.as_object().expect("object").keys().cloned().collect();
            assert_eq!(keys, fields, "{out}");
            for k in ["object", "cause", "hint"] {
                assert!(!text(p, k).is_empty(), "{k}: {out}");
            }
            assert!(strs(p, "snapshots").iter().all(|s| hex64(s)), "{out}");
            assert!(
                strs(p, "files").iter().all(|f| f
                    .split_once(':')
                    .is_some_and(|(id, path)| id.len() == 8 && path.starts_with('/'))),
                "{out}"
            );
            assert!(num(p, "files_affected") >= strs(p, "files").len() as u64);
        }
    }
    // The text report is not JSON.
    let out = fx.id(&["check", "--read-data"]);
    out.code_is(4);
    assert!(serde_json::from_str::<Value>(&out.stdout).is_err(), "{out}");
}
