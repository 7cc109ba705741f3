//! `cairn check` against damaged repositories: objects of every kind flipped, truncated or
//! deleted. For each: which mode finds it, the exit code, and that the report names the
//! object, the snapshots and the files it affects, while the unaffected snapshot still
//! restores byte-exact.
//!
//! Every repository holds two snapshots backed up one after the other from separate
//! directories, so each has its own data pack, tree pack and index object.

use cairn_e2e::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

const KB: usize = 1000;

/// One snapshot and the objects its backup added.
struct Snap {
    id: String,
    src: PathBuf,
    data: Vec<String>,
    tree: Vec<String>,
    index: Vec<String>,
}

/// A repository with snapshots `a` and `b`.
struct Two {
    fx: Fixture,
    a: Snap,
    b: Snap,
}

fn new_objects(fx: &Fixture, sub: &str, before: &BTreeSet<String>) -> Vec<String> {
    fx.store
        .names(sub)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect()
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
        data: new_objects(fx, "data", &before),
        tree: new_objects(fx, "tree", &before),
        index: new_objects(fx, "index", &before),
        id,
        src,
    }
}

fn two(backend: Backend) -> Two {
    let fx = Fixture::on(backend);
    let a = back_up(&fx, "a", 11);
    let b = back_up(&fx, "b", 22);
    for s in [&a, &b] {
        assert_eq!(
            (s.data.len(), s.tree.len(), s.index.len()),
            (1, 1, 1),
            "each backup should add one data pack, one tree pack and one index object"
        );
    }
    Two { fx, a, b }
}

/// `cairn --json check ARGS` with the identity.
fn check(fx: &Fixture, args: &[&str]) -> Output {
    let mut all = vec!["--json", "check"];
    all.extend_from_slice(args);
    fx.id(&all)
}

fn problems(v: &Value) -> &Vec<Value> {
    v["problems"].as_array().expect("problems array")
}

/// The problem reported for `object`; panics with the report when there is none.
fn problem<'a>(v: &'a Value, object: &str) -> &'a Value {
    problems(v)
        .iter()
        .find(|p| p["object"] == object)
        .unwrap_or_else(|| panic!("no problem reported for {object}: {v:#}"))
}

/// Damage found: exit 4, `clean` false; returns the report.
fn damaged(out: &Output) -> Value {
    out.code_is(4);
    let v = out.json();
    assert_eq!(v["clean"], false, "{v:#}");
    assert!(!problems(&v).is_empty(), "{v:#}");
    v
}

/// The problem for `object` names snapshot `hit` (and not `miss`) and a file of `hit`.
fn names_snapshot(v: &Value, object: &str, hit: &Snap, miss: Option<&Snap>, file: &str) {
    let p = problem(v, object);
    let snaps = strs(p, "snapshots");
    assert!(
        snaps.contains(&hit.id),
        "{object} should affect {}: {p:#}",
        hit.id
    );
    if let Some(m) = miss {
        assert!(
            !snaps.contains(&m.id),
            "{object} cannot affect {}: {p:#}",
            m.id
        );
    }
    let files = strs(p, "files");
    assert!(
        files.iter().any(|f| f.ends_with(file)),
        "{object}: no file ending in {file}: {p:#}"
    );
    assert!(p["files_affected"].as_u64().expect("count") >= 1, "{p:#}");
    assert!(!p["cause"].as_str().expect("cause").is_empty(), "{p:#}");
    assert!(!p["hint"].as_str().expect("hint").is_empty(), "{p:#}");
}

/// Snapshot `s` restores byte-exact.
fn restores(fx: &Fixture, s: &Snap) {
    let target = fx.path(&format!("restore-{}", &s.id[..8]));
    fx.restore(&s.id, &target, &[]).ok();
    let got = Fixture::restored(&target, &s.src);
    for f in files_below(&s.src) {
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

fn clean_repository_passes_every_mode(backend: Backend) {
    let t = two(backend);
    let fx = &t.fx;
    let v = check(fx, &[]).ok().json();
    assert_eq!(v["clean"], true, "{v:#}");
    assert_eq!(v["snapshots"], 2, "{v:#}");
    assert_eq!(v["packs"], 4, "{v:#}");
    assert!(v["blobs"].as_u64().expect("blobs") >= 4, "{v:#}");
    assert_eq!(v["packs_read"], 0, "plain check reads no pack whole: {v:#}");

    let v = check(fx, &["--read-data"]).ok().json();
    assert_eq!(v["packs_read"], 4, "{v:#}");
    assert_eq!(v["blobs_verified"], v["blobs"], "{v:#}");

    // Auditors: no credentials at all.
    let out = fx.run(&["-r", &fx.store.location(), "--json", "check", "--no-key"]);
    let v = out.ok().json();
    assert_eq!(v["clean"], true, "{v:#}");
    let objects = fx.store.list("").len() as u64;
    assert!(
        v["objects_named"].as_u64().expect("count") >= objects - 1,
        "every object but config is named by its hash: {v:#} ({objects} objects)"
    );

    // A write key checks structure, and with --read-data verifies tree packs fully.
    let v = fx.wk(&["--json", "check", "--read-data"]).ok().json();
    assert_eq!(v["clean"], true, "{v:#}");
    assert!(
        strs(&v, "notes").iter().any(|n| n.contains("identity")),
        "the write key's limits are not said: {v:#}"
    );

    let out = fx.id(&["check"]);
    out.ok();
    assert!(out.stdout.contains("no damage found"), "{out}");
}
backend_tests!(clean_repository_passes_every_mode);

fn flipped_data_pack_is_found_by_reading_and_by_names(backend: Backend) {
    let t = two(backend);
    let fx = &t.fx;
    let pack = &t.a.data[0];
    fx.store.flip_byte(pack);

    // Same size: the structure is intact, only reading finds it.
    check(fx, &[]).ok();

    let v = damaged(&check(fx, &["--read-data"]));
    assert_eq!(problems(&v).len(), 1, "{v:#}");
    names_snapshot(&v, pack, &t.a, Some(&t.b), "/disk.bin");
    assert!(
        problem(&v, pack)["hint"]
            .as_str()
            .expect("hint")
            .contains("repair snapshots"),
        "{v:#}"
    );

    let out = fx.run(&["-r", &fx.store.location(), "--json", "check", "--no-key"]);
    let v = damaged(&out);
    assert!(
        problem(&v, pack)["cause"]
            .as_str()
            .expect("cause")
            .contains("does not match its name"),
        "{v:#}"
    );

    // The write key cannot decrypt the pack but still sees that its bytes changed.
    let v = damaged(&fx.wk(&["--json", "check", "--read-data"]));
    problem(&v, pack);

    // Text report: object, snapshot and file.
    let out = fx.id(&["check", "--read-data"]);
    out.code_is(4);
    assert!(
        out.stdout.contains(&format!("DAMAGED {pack}"))
            && out.stdout.contains(&t.a.id[..8])
            && out.stdout.contains("disk.bin"),
        "{out}"
    );

    restores(fx, &t.b);
}
backend_tests!(flipped_data_pack_is_found_by_reading_and_by_names);

fn truncated_or_deleted_data_pack_is_found_by_plain_check(backend: Backend) {
    let t = two(backend);
    let fx = &t.fx;
    let pack = &t.a.data[0];
    let size = fx.store.read(pack).expect("pack").len();
    fx.store.truncate(pack, size / 2);
    let v = damaged(&check(fx, &[]));
    names_snapshot(&v, pack, &t.a, Some(&t.b), "/disk.bin");
    assert!(
        problem(&v, pack)["cause"]
            .as_str()
            .expect("cause")
            .contains("truncated"),
        "{v:#}"
    );

    fx.store.delete(pack);
    let v = damaged(&check(fx, &[]));
    names_snapshot(&v, pack, &t.a, Some(&t.b), "/disk.bin");
    assert!(
        problem(&v, pack)["cause"]
            .as_str()
            .expect("cause")
            .contains("missing"),
        "{v:#}"
    );
    // --read-data reports the same pack once, not twice.
    let v = damaged(&check(fx, &["--read-data"]));
    let n = problems(&v)
        .iter()
        .filter(|p| p["object"] == **pack)
        .count();
    assert_eq!(n, 1, "{v:#}");

    restores(fx, &t.b);
}
backend_tests!(truncated_or_deleted_data_pack_is_found_by_plain_check);

#[test]
fn damaged_tree_pack_is_found_and_named() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let pack = &t.a.tree[0];
    let pack_id = pack.rsplit('/').next().expect("id");
    fx.store.flip_byte(pack);

    // Plain check walks every tree: the snapshot whose trees cannot be read is named.
    let v = damaged(&check(fx, &[]));
    let p = problems(&v)
        .iter()
        .find(|p| p.to_string().contains(pack_id))
        .unwrap_or_else(|| panic!("no problem names {pack}: {v:#}"));
    assert!(strs(p, "snapshots").contains(&t.a.id), "{v:#}");

    // Reading names the pack itself.
    let v = damaged(&check(fx, &["--read-data"]));
    problem(&v, pack);

    restores(fx, &t.b);

    fx.store.delete(pack);
    let v = damaged(&check(fx, &[]));
    assert!(
        strs(problem(&v, pack), "snapshots").contains(&t.a.id),
        "{v:#}"
    );
}

#[test]
fn damaged_or_lost_index_is_found_and_repair_index_fixes_it() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let index = &t.a.index[0];
    fx.store.flip_byte(index);
    let v = damaged(&check(fx, &[]));
    assert!(
        problem(&v, index)["hint"]
            .as_str()
            .expect("hint")
            .contains("repair index"),
        "{v:#}"
    );
    // The blobs it listed are now in no index: snapshot a is affected, b is not.
    let lost = problems(&v)
        .iter()
        .filter(|p| p["object"].as_str().expect("object").starts_with("blob "))
        .collect::<Vec<_>>();
    assert!(!lost.is_empty(), "{v:#}");
    for p in &lost {
        let snaps = strs(p, "snapshots");
        assert!(snaps.contains(&t.a.id) && !snaps.contains(&t.b.id), "{p:#}");
    }

    fx.store.delete(index);
    let v = damaged(&check(fx, &[]));
    assert!(
        problems(&v)
            .iter()
            .all(|p| !strs(p, "snapshots").contains(&t.b.id)),
        "{v:#}"
    );

    fx.id(&["repair", "index"]).ok();
    let v = check(fx, &["--read-data"]).ok().json();
    assert_eq!(v["clean"], true, "{v:#}");
    restores(fx, &t.a);
    restores(fx, &t.b);
}

#[test]
fn damaged_snapshot_object_is_named_and_the_other_restores() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let name = format!("snapshots/{}", t.a.id);
    fx.store.flip_byte(&name);
    let v = damaged(&check(fx, &[]));
    problem(&v, &name);
    assert_eq!(v["snapshots"], 1, "only b is readable: {v:#}");
    let out = fx.run(&["-r", &fx.store.location(), "--json", "check", "--no-key"]);
    problem(&damaged(&out), &name);
    restores(fx, &t.b);

    // A deleted snapshot object is a forgotten snapshot, not damage: its data is unused.
    fx.store.delete(&name);
    let v = check(fx, &[]).ok().json();
    assert_eq!(v["snapshots"], 1, "{v:#}");
}

#[test]
fn damaged_config_or_key_objects_stop_check_with_a_clear_error() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("f"), &random_bytes(3, 10 * KB));
    fx.backup(&[&src]);

    let key = fx.store.names("keys").pop().expect("a key object");
    let original = fx.store.read(&key).expect("key");
    fx.store.flip_byte(&key);
    let out = check(&fx, &[]);
    out.code_is(1).stderr_has(&[&key]);
    // Without a key the damaged object is simply reported.
    let out = fx.run(&["-r", &fx.store.location(), "--json", "check", "--no-key"]);
    problem(&damaged(&out), &key);
    fx.store.write(&key, &original);
    check(&fx, &[]).ok();

    // config is plaintext and not named by a hash: a changed repository id is caught by the
    // keys bound to it; without a key, only a config that no longer decodes is.
    fx.store.flip_byte("config");
    check(&fx, &[]).code_is(1).stderr_has(&["config"]);
    fx.store.truncate("config", 10);
    let out = fx.run(&["-r", &fx.store.location(), "--json", "check", "--no-key"]);
    problem(&damaged(&out), "config");
}

#[test]
fn read_data_subsets_split_the_packs_without_overlap() {
    let t = two(Backend::Local);
    let fx = &t.fx;
    let pack = &t.a.data[0];
    fx.store.flip_byte(pack);
    let mut read = 0;
    let mut found = 0;
    for n in 1..=3 {
        let out = check(fx, &["--read-data-subset", &format!("{n}/3")]);
        let v = out.json();
        read += v["packs_read"].as_u64().expect("packs_read");
        if out.code == 4 {
            found += 1;
            problem(&v, pack);
        } else {
            out.ok();
        }
    }
    assert_eq!(found, 1, "exactly one group holds the damaged pack");
    assert_eq!(read, 3, "the groups read every intact pack once");
    let v = damaged(&check(fx, &["--read-data-subset", "100%"]));
    problem(&v, pack);
}

#[test]
fn bad_subsets_and_conflicting_flags_are_usage_errors() {
    let fx = Fixture::new();
    for bad in ["0%", "101%", "4/3", "0/3", "1/0", "abc", "1/3/4", "%"] {
        fx.id(&["check", "--read-data-subset", bad])
            .code_is(2)
            .stderr_has(&[bad]);
    }
    fx.id(&["check", "--read-data-subset", "-5%"])
        .code_is(2)
        .stderr_has(&["-5"]);
    fx.id(&["check", "--read-data", "--read-data-subset", "1/2"])
        .code_is(2);
    fx.id(&["check", "--no-key", "--read-data"]).code_is(2);
    check(&fx, &["--read-data-subset", "0.5%"]).ok();
}

#[test]
fn check_of_a_missing_repository_could_not_run() {
    let fx = Fixture::new();
    let missing = fx.path("nowhere");
    let out = fx.run(&["-r", &missing.to_string_lossy(), "check", "--no-key"]);
    out.code_is(1).stderr_has(&["nowhere"]);
}
