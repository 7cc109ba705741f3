//! Damaged repositories: a flipped bit, a truncated object, a deleted pack. cairn must notice,
//! say which object is damaged, keep everything that does not depend on it usable, and never
//! panic (checked for every run by the `cairn` helper).

use cairn_e2e::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

/// A repository with two snapshots of two unrelated trees, so each has its own data pack,
/// tree pack and index.
struct Two {
    fx: Fixture,
    src_a: PathBuf,
    src_b: PathBuf,
    snap_a: String,
    snap_b: String,
    /// Objects written by backup A only (names relative to the repository).
    only_a: BTreeSet<String>,
}

fn two() -> Two {
    let fx = Fixture::new();
    let src_a = fx.path("a");
    write_file(&src_a.join("etcd/member.db"), &random_bytes(21, 600_000));
    write_file(
        &src_a.join("manifests/kube-apiserver.yaml"),
        &text_bytes(22, 40_000),
    );
    let before: BTreeSet<String> = fx.object_names("").into_iter().collect();
    let snap_a = Fixture::snap_id(&fx.backup(&[&src_a]));
    let after_a: BTreeSet<String> = fx.object_names("").into_iter().collect();
    let src_b = fx.path("b");
    write_file(&src_b.join("pki/ca.crt"), &random_bytes(23, 300_000));
    write_file(&src_b.join("config.yaml"), &text_bytes(24, 10_000));
    let snap_b = Fixture::snap_id(&fx.backup(&[&src_b]));
    let only_a = after_a.difference(&before).cloned().collect();
    Two {
        fx,
        src_a,
        src_b,
        snap_a,
        snap_b,
        only_a,
    }
}

impl Two {
    /// The objects of backup A only below `dir`.
    fn a_objects(&self, dir: &str) -> Vec<String> {
        self.only_a
            .iter()
            .filter(|p| p.starts_with(&format!("{dir}/")))
            .cloned()
            .collect()
    }

    /// B still restores byte-exact.
    #[track_caller]
    fn b_still_restores(&self, name: &str) {
        let target = self.fx.path(name);
        self.fx.restore(&self.snap_b, &target, &[]).ok();
        assert_trees_equal(&self.src_b, &Fixture::restored(&target, &self.src_b));
    }
}

#[test]
fn flipped_bit_in_a_data_pack_is_named_and_other_snapshots_restore() {
    let t = two();
    let data = t.a_objects("data");
    assert_eq!(data.len(), 1, "{:?}", t.only_a);
    t.fx.store.flip_byte(&data[0]);

    let target = t.fx.path("ra");
    let out = t.fx.restore(&t.snap_a, &target, &[]);
    out.failed().stderr_has(&[&data[0]]);
    // Nothing half-written is left under a final name or a temporary one.
    let restored = Fixture::restored(&target, &t.src_a);
    assert!(!restored.join("etcd/member.db").exists());
    assert!(files_below(&target)
        .iter()
        .all(|p| !p.to_string_lossy().contains(".cairn-restore-")));
    // cat names it too.
    let out =
        t.fx.id(&["cat", &t.snap_a, s(&t.src_a.join("etcd/member.db"))]);
    out.failed().stderr_has(&[&data[0]]);
    // Listing needs no data pack.
    t.fx.wk(&["ls", &t.snap_a]).ok();
    t.b_still_restores("rb");
}

#[test]
fn flipped_bit_in_the_age_header_of_a_data_pack_is_named() {
    let t = two();
    let data = t.a_objects("data");
    // Inside the first recipient stanza's body.
    t.fx.store.flip_bits(&data[0], 40, 0x10);
    let out = t.fx.restore(&t.snap_a, &t.fx.path("ra"), &[]);
    out.failed().stderr_has(&[&data[0]]);
    t.b_still_restores("rb");
}

#[test]
fn flipped_bit_in_a_tree_pack_is_named() {
    let t = two();
    let trees = t.a_objects("tree");
    assert_eq!(trees.len(), 1);
    t.fx.store.flip_bits(&trees[0], -30, 0x10);
    let out = t.fx.wk(&["ls", &t.snap_a]);
    out.failed().stderr_has(&[&trees[0]]);
    t.fx.restore(&t.snap_a, &t.fx.path("ra"), &[])
        .failed()
        .stderr_has(&[&trees[0]]);
    t.b_still_restores("rb");
}

#[test]
fn truncated_snapshot_object_is_reported_and_others_listed() {
    let t = two();
    t.fx.store.truncate(&format!("snapshots/{}", t.snap_a), 100);
    let out = t.fx.wk(&["--json", "snapshots"]);
    // Exit code 3: listed, but damaged snapshot objects were found (README).
    out.code_is(3)
        .stderr_has(&[&format!("snapshots/{}", t.snap_a)]);
    let list = out.json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![t.snap_b.as_str()]);
    // Text mode too.
    let out = t.fx.wk(&["snapshots"]);
    out.code_is(3).stderr_has(&[&t.snap_a]);
    assert!(out.stdout.contains(&t.snap_b[..8]), "{out}");
    // Once, not once by the library's log and again by the command.
    let lines = out.stderr.lines().filter(|l| l.contains(&t.snap_a)).count();
    assert_eq!(lines, 1, "{out}");
    // Restoring it by id names the object; `latest` still works (b is newer).
    t.fx.restore(&t.snap_a, &t.fx.path("ra"), &[])
        .failed()
        .stderr_has(&[&format!("snapshots/{}", t.snap_a)]);
    t.b_still_restores("rb");
    // A snapshot object renamed (content no longer matches its name) is damaged as well.
    let b = t.fx.store.read(&format!("snapshots/{}", t.snap_b)).unwrap();
    t.fx.store
        .write(&format!("snapshots/{}", "0".repeat(64)), &b);
    let out = t.fx.wk(&["--json", "snapshots"]);
    out.code_is(3).stderr_has(&[&"0".repeat(64)]);
    assert_eq!(out.json().as_array().unwrap().len(), 1);

    // `check` says how to clear them, and `forget ID` removes both objects: by id only, as
    // their hosts and tags cannot be read.
    let planted = "0".repeat(64);
    let out = t.fx.id(&["check"]);
    out.code_is(4);
    assert!(
        out.stdout.contains("remove it with `cairn forget ID`"),
        "{out}"
    );
    let out = t.fx.id(&["forget", "--host", "h", &t.snap_a]);
    out.code_is(2)
        .stderr_has(&["cannot be read", "by id without selection options"]);
    let out = t.fx.id(&["forget", "--dry-run", &t.snap_a[..12], &planted]);
    assert!(out.ok().stdout.contains("damaged snapshot object"), "{out}");
    assert_eq!(t.fx.object_names("snapshots").len(), 3);
    let out = t.fx.id(&["--json", "forget", &t.snap_a, &planted]);
    let report = out.ok().json();
    assert_eq!(report["deleted"], 2, "{out}");
    assert_eq!(report["snapshots"][0]["reasons"][0], "damaged", "{out}");
    assert_eq!(
        t.fx.object_names("snapshots"),
        [format!("snapshots/{}", t.snap_b)]
    );
    t.fx.wk(&["snapshots"]).ok();
    t.fx.id(&["check"]).ok();
}

#[test]
fn truncated_index_object_is_reported_and_backup_recovers() {
    let t = two();
    let index = t.a_objects("index");
    assert_eq!(index.len(), 1);
    t.fx.store.truncate(&index[0], 50);
    // Snapshot A's blobs are now unknown: restore fails naming the index object.
    let out = t.fx.restore(&t.snap_a, &t.fx.path("ra"), &[]);
    out.failed().stderr_has(&[&index[0]]);
    t.b_still_restores("rb");
    // A new backup of A's tree stores what the lost index described again, and restores.
    let r = t.fx.backup(&[&t.src_a]);
    let snap = Fixture::snap_id(&r);
    let target = t.fx.path("ra2");
    t.fx.restore(&snap, &target, &[]).ok();
    assert_trees_equal(&t.src_a, &Fixture::restored(&target, &t.src_a));
}

#[test]
fn deleted_pack_is_named_as_missing() {
    let t = two();
    let data = t.a_objects("data");
    t.fx.store.delete(&data[0]);
    let out = t.fx.restore(&t.snap_a, &t.fx.path("ra"), &[]);
    out.failed().stderr_has(&[&data[0], "missing"]);
    t.b_still_restores("rb");

    // A deleted tree pack: listing fails naming it.
    let trees = t.a_objects("tree");
    t.fx.store.delete(&trees[0]);
    t.fx.wk(&["ls", &t.snap_a])
        .failed()
        .stderr_has(&[&trees[0], "missing"]);
    t.b_still_restores("rb2");
}

#[test]
fn garbage_objects_never_crash_any_command() {
    // Replace every object of snapshot A in turn with garbage of several shapes; every command
    // must fail (or succeed) cleanly — the helper fails the test on any panic or signal.
    let t = two();
    let shapes: [&[u8]; 4] = [
        b"",
        b"age-encryption.org/v1\n",
        b"age-encryption.org/v1\n-> X25519 AAAA\n--- AAAA\n",
        &[0xffu8; 4096],
    ];
    // (Lease objects stay after a backup until prune; restore does not read them.)
    for obj in t
        .only_a
        .iter()
        .filter(|p| !p.starts_with("keys/") && !p.starts_with("locks/"))
    {
        let orig = t.fx.store.read(obj).unwrap();
        for shape in shapes {
            t.fx.store.write(obj, shape);
            let target = t.fx.path("garbage-target");
            let _ = fs::remove_dir_all(&target);
            let _ = t.fx.wk(&["snapshots"]);
            let _ = t.fx.wk(&["ls", &t.snap_a]);
            let out = t.fx.restore(&t.snap_a, &target, &[]);
            out.failed();
        }
        t.fx.store.write(obj, &orig);
    }
    let target = t.fx.path("final");
    t.fx.restore(&t.snap_a, &target, &[]).ok();
    assert_trees_equal(&t.src_a, &Fixture::restored(&target, &t.src_a));
}

#[test]
fn killed_backup_leaves_no_snapshot_and_the_next_one_works() {
    let fx = Fixture::new();
    let src = fx.path("src");
    for i in 0..6u64 {
        write_file(
            &src.join(format!("f{i}.bin")),
            &random_bytes(60 + i, 20_000_000),
        );
    }
    let mut child = std::process::Command::new(cairn_bin())
        .args(fx.wk_args(&["-q", "backup", s(&src)]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as it has started writing packs (or temporary pack files).
    let started = std::time::Instant::now();
    let mut killed = false;
    while started.elapsed().as_secs() < 60 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if !files_below(&fx.repo.join("data")).is_empty() {
            child.kill().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let status = child.wait().unwrap();
    if killed && status.code().is_none() {
        assert!(
            fx.objects("snapshots").is_empty(),
            "a killed backup left a snapshot"
        );
        let out = fx.wk(&["--json", "snapshots"]);
        out.ok();
        assert_eq!(out.json(), serde_json::json!([]));
    } else {
        eprintln!("note: the backup finished before it could be killed ({status})");
    }
    // Leftover packs and temporary files do not disturb the next backup or restore.
    let r = fx.backup(&[&src]);
    let target = fx.path("t");
    fx.restore(&Fixture::snap_id(&r), &target, &[]).ok();
    assert_trees_equal(&src, &Fixture::restored(&target, &src));
}

#[test]
fn damaged_newest_snapshot_makes_latest_refuse_instead_of_taking_an_older_one() {
    let t = two();
    // b is the newest; with its object unreadable, "latest" is unknown.
    let b_obj = format!("snapshots/{}", t.snap_b);
    t.fx.store.flip_byte(&b_obj);
    let target = t.fx.path("rl");
    let out = t.fx.restore("latest", &target, &[]);
    out.code_is(1)
        .stderr_has(&[&b_obj, "latest", "cairn snapshots"]);
    assert!(!target.exists() || files_below(&target).is_empty(), "{out}");
    t.fx.wk(&["ls", "latest"]).code_is(1).stderr_has(&[&b_obj]);
    // An object whose name is no snapshot id was never a snapshot: it does not block latest.
    t.fx.store.delete(&b_obj);
    t.fx.store.write("snapshots/README", b"planted");
    t.fx.wk(&["ls", "latest"]).ok();
    // A filter that matches nothing is named in the error.
    t.fx.restore("latest", &t.fx.path("rh"), &["--host", "master-9"])
        .failed()
        .stderr_has(&["--host master-9"]);
    // The older snapshot is still restorable, by id or as latest.
    let target = t.fx.path("ra");
    t.fx.restore("latest", &target, &[]).ok();
    assert_trees_equal(&t.src_a, &Fixture::restored(&target, &t.src_a));
}

#[test]
fn a_foreign_object_among_the_packs_is_reported_by_the_structure_check() {
    let t = two();
    t.fx.store.write("data/0e/README", b"planted");
    let out = t.fx.wk(&["--json", "check"]);
    out.code_is(4);
    let problems = out.json()["problems"].clone();
    let planted: Vec<_> = problems
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["object"] == "data/0e/README")
        .collect();
    assert_eq!(planted.len(), 1, "{problems:#}");
    assert!(planted[0]["cause"]
        .as_str()
        .unwrap()
        .contains("not a pack id"));
    // Nothing else is affected; an NFS client's rename of a file deleted while open is no
    // foreign object.
    t.fx.store.delete("data/0e/README");
    t.fx.store
        .write("data/0e/.nfs000000000012345600000001", b"silly");
    t.fx.wk(&["check"]).ok();
}

/// A planted object below `gc/` (seven bytes of garbage under a marker's name) stops backups
/// and prunes, which cannot tell which packs it condemns; they say what to do, and `check`
/// reports it among the damage and goes on auditing. Moving it away lets backups go on.
#[test]
fn an_unreadable_gc_marker_is_explained_and_check_goes_on() {
    let t = two();
    let garbage = b"garbage";
    let name = format!("gc/{}", blake3::hash(garbage).to_hex());
    t.fx.store.write(&name, garbage);
    let out = t.fx.wk(&["backup", s(&t.src_a)]);
    out.code_is(1);
    assert!(
        out.stderr.contains(&name)
            && out.stderr.contains("if no prune is running")
            && out.stderr.contains("cairn repair index"),
        "{out}"
    );
    let out = t.fx.id(&["--json", "check"]);
    out.code_is(4);
    let problems = out.json()["problems"].clone();
    assert_eq!(problems.as_array().unwrap().len(), 1, "{problems:#}");
    assert_eq!(problems[0]["object"], name.as_str(), "{problems:#}");
    t.fx.store.delete(&name);
    // Garbage under a name that is not its hash (bit rot in a real marker) is explained too.
    let other = format!("gc/{}", "ab".repeat(32));
    t.fx.store.write(&other, garbage);
    let out = t.fx.wk(&["backup", s(&t.src_a)]);
    out.code_is(1);
    assert!(out.stderr.contains("if no prune is running"), "{out}");
    t.fx.id(&["check"]).code_is(4);
    t.fx.store.delete(&other);
    t.fx.wk(&["backup", s(&t.src_a)]).ok();
    t.fx.id(&["check"]).ok();
}

#[test]
fn a_damaged_config_is_damage_that_check_reports_not_a_failure_to_run() {
    let fx = Fixture::new();
    let mut config = fx.store.read("config").unwrap();
    config.extend_from_slice(b"garbage");
    fx.store.write("config", &config);
    for args in [&["check"][..], &["check", "--no-key"], &["--json", "check"]] {
        let out = fx.id(args);
        out.code_is(4);
        assert!(out.stdout.contains("config"), "{out}");
    }
    let out = fx.id(&["check"]);
    assert!(
        out.stdout.contains("DAMAGED config") && out.stdout.contains("init --like"),
        "{out}"
    );
}
