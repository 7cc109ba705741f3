//! Restore must not half-happen: the whole target is checked before anything is written.
//! Entries in the way refuse the restore as a whole (naming them), `--dry-run` shows the plan
//! and writes nothing, existing directories keep their metadata unless `--overwrite`,
//! `--include` patterns that match nothing fail, and temporaries of killed restores are
//! cleaned up. The cluster-backup layout gets the same preflight.

use cairn_e2e::etcd::{self, Etcd};
use cairn_e2e::*;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

/// A backed-up source tree: `a-first.txt`, `conf/` (mode 0750, with files), `z-last.txt`.
/// Returns the fixture, the source directory and the snapshot id.
fn backed_up() -> (Fixture, PathBuf, String) {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("a-first.txt"), b"first\n");
    for i in 0..30 {
        write_file(&src.join(format!("conf/f{i:02}.yaml")), b"x: 1\n");
    }
    write_file(&src.join("z-last.txt"), b"last\n");
    chmod(&src.join("conf"), 0o750);
    stamp_mtimes(&src, 1_600_000_000);
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    (fx, src, snap)
}

/// Every path below `dir`, relative, sorted (directories included, symlinks not followed).
fn listing(dir: &Path) -> Vec<String> {
    scan_tree(dir)
        .into_keys()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect()
}

#[test]
fn conflicts_refuse_the_restore_before_anything_is_written() {
    let (fx, src, snap) = backed_up();
    let target = fx.path("t");
    let restored = Fixture::restored(&target, &src);
    // Only the last file of the snapshot is in the way: today's restore wrote everything
    // before it and then stopped.
    write_file(&restored.join("z-last.txt"), b"local edit\n");
    let before = listing(&target);
    let out = fx.restore(&snap, &target, &[]);
    out.code_is(1);
    assert_eq!(
        listing(&target),
        before,
        "a refused restore wrote something"
    );
    out.stderr_has(&["/z-last.txt", "1 path", "--overwrite", "--dry-run"]);
    assert_eq!(
        fs::read(restored.join("z-last.txt")).unwrap(),
        b"local edit\n"
    );
    // With --json the advice is the error's hint, not a line of its message.
    let out = fx.id(&["--json", "restore", &snap, "--target", s(&target)]);
    out.code_is(1);
    let e: serde_json::Value = serde_json::from_str(out.stderr.trim()).expect("one JSON object");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/z-last.txt") && !message.contains("hint"),
        "{out}"
    );
    assert!(
        e["error"]["hint"].as_str().unwrap().contains("--overwrite"),
        "{out}"
    );

    // Many conflicts: the first 20 are named, and the count of all.
    for i in 0..30 {
        write_file(&restored.join(format!("conf/f{i:02}.yaml")), b"mine\n");
    }
    let out = fx.restore(&snap, &target, &[]);
    out.code_is(1)
        .stderr_has(&["31 paths", "/conf/f00.yaml", "and 11 more"]);
    assert!(!out.stderr.contains("f25.yaml"), "{out}");
    assert!(!restored.join("a-first.txt").exists());

    fx.restore(&snap, &target, &["--overwrite"]).ok();
    assert_trees_equal(&src, &restored);
}

#[test]
fn non_directories_in_place_of_directories_refuse_even_with_overwrite() {
    let (fx, src, snap) = backed_up();
    let outside = fx.dir("outside");
    for (name, make) in [
        (
            "symlink",
            (|p: &Path, o: &Path| symlink(o, p).unwrap()) as fn(&Path, &Path),
        ),
        ("file", |p, _| write_file(p, b"a file where conf/ goes")),
    ] {
        let target = fx.path(&format!("t-{name}"));
        let restored = Fixture::restored(&target, &src);
        fs::create_dir_all(&restored).unwrap();
        make(&restored.join("conf"), &outside);
        let before = listing(&target);
        for extra in [&[][..], &["--overwrite"]] {
            let out = fx.restore(&snap, &target, extra);
            out.code_is(1).stderr_has(&["/conf", name, "directory"]);
            assert_eq!(listing(&target), before, "{name}: something was written");
            assert!(listing(&outside).len() == 1, "written through the {name}");
        }
    }
    // A symlink where a file goes is in the way too (not followed, not replaced).
    let target = fx.path("t-link-file");
    let restored = Fixture::restored(&target, &src);
    fs::create_dir_all(&restored).unwrap();
    symlink(outside.join("victim"), restored.join("a-first.txt")).unwrap();
    fx.restore(&snap, &target, &[])
        .code_is(1)
        .stderr_has(&["/a-first.txt", "symlink"]);
    assert!(!outside.join("victim").exists());
    assert!(!restored.join("z-last.txt").exists());
}

#[test]
fn dry_run_lists_the_plan_and_writes_nothing() {
    let (fx, src, snap) = backed_up();
    let target = fx.path("new-target");
    let out = fx.restore(&snap, &target, &["--dry-run"]);
    out.ok();
    assert!(!target.exists(), "--dry-run created the target");
    let src_s = s(&src);
    for line in [
        format!("new      {src_s}/a-first.txt"),
        format!("new      {src_s}/conf/f29.yaml"),
        format!("new      {src_s}/conf"),
    ] {
        assert!(out.stdout.contains(&line), "missing {line:?}\n{out}");
    }

    // JSON: every step, and the totals.
    let out = fx.id(&[
        "--json",
        "restore",
        &snap,
        "--target",
        s(&target),
        "--dry-run",
    ]);
    out.ok();
    let v = out.json();
    let steps = v["steps"].as_array().expect("steps");
    assert!(steps.iter().all(|s| s["action"] == "new"), "{v:#}");
    assert_eq!(num(&v["plan"], "new") as usize, steps.len());
    assert!(steps
        .iter()
        .any(|s| s["path"] == format!("{src_s}/z-last.txt")));
    assert!(!target.exists());

    // An existing directory is kept, an existing file is in the way: exit 1, nothing touched.
    let restored = Fixture::restored(&target, &src);
    write_file(&restored.join("conf/f03.yaml"), b"mine\n");
    let before = scan_tree(&target);
    let out = fx.id(&[
        "--json",
        "restore",
        &snap,
        "--target",
        s(&target),
        "--dry-run",
    ]);
    out.code_is(1)
        .stderr_has(&["/conf/f03.yaml", "would be refused"]);
    let v = out.json();
    let action = |p: &str| {
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"] == format!("{src_s}/{p}"))
            .map(|s| s["action"].as_str().unwrap().to_string())
    };
    assert_eq!(action("conf").as_deref(), Some("keep"));
    assert_eq!(action("conf/f03.yaml").as_deref(), Some("conflict"));
    assert_eq!(action("conf/f04.yaml").as_deref(), Some("new"));
    assert_eq!(num(&v["plan"], "conflicts"), 1);

    // With --overwrite: replaced and updated, still nothing written.
    let out = fx.restore(&snap, &target, &["--dry-run", "--overwrite"]);
    out.ok();
    assert!(
        out.stdout
            .contains(&format!("replace  {src_s}/conf/f03.yaml")),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("update   {src_s}/conf\n")),
        "{out}"
    );
    assert_eq!(scan_tree(&target), before, "--dry-run changed the target");
}

#[test]
fn existing_directories_keep_their_metadata_unless_overwrite() {
    let (fx, src, snap) = backed_up();
    let target = fx.path("t");
    let restored = Fixture::restored(&target, &src);
    let conf = restored.join("conf");
    fs::create_dir_all(&conf).unwrap();
    chmod(&conf, 0o711);
    xattr::set(&conf, "user.local", b"mine").unwrap();
    set_mtime(&conf, 1_234_567_890, 5);
    let meta = |p: &Path| {
        let m = fs::symlink_metadata(p).unwrap();
        (m.mode() & 0o7777, m.mtime(), m.mtime_nsec())
    };
    let before = meta(&conf);

    let out = fx.id(&["--json", "restore", &snap, "--target", s(&target)]);
    out.ok();
    assert_eq!(
        meta(&conf),
        before,
        "an existing directory's metadata changed"
    );
    assert_eq!(
        xattr::get(&conf, "user.local").unwrap().as_deref(),
        Some(&b"mine"[..])
    );
    assert!(num(&out.json()["report"], "kept_dirs") >= 1, "{out}");
    assert_eq!(fs::read(conf.join("f07.yaml")).unwrap(), b"x: 1\n");

    fx.restore(&snap, &target, &["--overwrite"]).ok();
    assert_eq!(meta(&conf), meta(&src.join("conf")), "--overwrite sets it");
}

#[test]
fn include_patterns_that_match_nothing_fail() {
    let (fx, src, snap) = backed_up();
    let target = fx.path("t");
    let out = fx.restore(&snap, &target, &["--include", "**/nope"]);
    out.code_is(1)
        .stderr_has(&["\"**/nope\"", "matched nothing"]);
    assert!(!target.exists());

    // One pattern matches, the other does not: only the other is named, nothing is written.
    let out = fx.restore(
        &snap,
        &target,
        &["--include", "**/conf", "--include", "**/missing.txt"],
    );
    out.code_is(1).stderr_has(&["\"**/missing.txt\""]);
    assert!(!out.stderr.contains("\"**/conf\""), "{out}");
    assert!(!target.exists());

    // A pattern matching only below a directory another pattern selected still counts.
    fx.restore(
        &snap,
        &target,
        &["--include", "**/conf", "--include", "*f07.yaml"],
    )
    .ok();
    let restored = Fixture::restored(&target, &src);
    assert!(restored.join("conf/f07.yaml").exists());
    assert!(!restored.join("a-first.txt").exists());
}

#[test]
fn temporaries_of_dead_restores_are_removed() {
    let (fx, src, snap) = backed_up();
    let target = fx.path("t");
    let conf = Fixture::restored(&target, &src).join("conf");
    fs::create_dir_all(&conf).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let live = std::process::id();
    let stale = conf.join(format!(".cairn-restore-{dead}-7"));
    let kept = [
        conf.join(format!(".cairn-restore-{live}-7")),
        conf.join(format!(".cairn-restore-{dead}-7.yaml")),
        conf.join(format!(".cairn-restore-{dead}-x")),
    ];
    write_file(&stale, b"half a file");
    for k in &kept {
        write_file(k, b"not stale");
    }
    let victim = fx.path("victim");
    write_file(&victim, b"outside");
    let link = conf.join(format!(".cairn-restore-{dead}-8"));
    symlink(&victim, &link).unwrap();

    let out = fx.id(&["--json", "restore", &snap, "--target", s(&target)]);
    out.ok();
    assert!(
        !stale.exists(),
        "the dead restore's temporary is still there"
    );
    assert_eq!(num(&out.json()["report"], "stale_temporaries"), 1, "{out}");
    for k in &kept {
        assert!(k.exists(), "{} was removed", k.display());
    }
    assert!(fs::symlink_metadata(&link).is_ok(), "a symlink was removed");
    assert_eq!(fs::read(&victim).unwrap(), b"outside");
}

#[test]
fn cluster_backup_layout_refuses_existing_files_before_writing() {
    if !etcd::available("cluster_backup_layout_refuses_existing_files_before_writing") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 50);
    let fx = Fixture::new();
    let pods = fx.dir("static-pod-resources");
    write_file(&pods.join("kube-apiserver-pod-3/pod.yaml"), b"kind: Pod\n");
    let mut args = vec!["--json", "backup", "cluster", "--static-pods-dir", s(&pods)];
    let extra = e.cairn_args();
    args.extend(extra.iter().map(String::as_str));
    let out = fx.wk(&args);
    out.ok();
    let id = Fixture::snap_id(&out.json());

    // The names it writes (the database first, then the archive).
    let probe = fx.path("probe");
    fx.restore(&id, &probe, &["--layout", "cluster-backup"])
        .ok();
    let archive = listing(&probe)
        .into_iter()
        .find(|n| n.starts_with("static_kuberesources_"))
        .expect("an archive");

    // The archive is in the way: the database (written first today) must not be written.
    let dir = fx.dir("backup");
    write_file(&dir.join(&archive), b"an older archive");
    let out = fx.restore(&id, &dir, &["--layout", "cluster-backup"]);
    out.code_is(1).stderr_has(&[&archive, "--overwrite"]);
    assert_eq!(listing(&dir), vec!["".to_string(), archive.clone()]);

    // --dry-run shows it, writes nothing, and fails as the restore would.
    let fresh = fx.path("fresh");
    let out = fx.restore(&id, &fresh, &["--layout", "cluster-backup", "--dry-run"]);
    out.ok();
    assert!(
        out.stdout.contains(&format!("new      /{archive}")),
        "{out}"
    );
    assert!(!fresh.exists(), "--dry-run created the directory");
    let out = fx.restore(&id, &dir, &["--layout", "cluster-backup", "--dry-run"]);
    out.code_is(1);
    assert!(
        out.stdout.contains(&format!("conflict /{archive}")),
        "{out}"
    );

    fx.restore(&id, &dir, &["--layout", "cluster-backup", "--overwrite"])
        .ok();
    assert_eq!(listing(&dir).len(), 3, "{:?}", listing(&dir));
    assert_ne!(fs::read(dir.join(&archive)).unwrap(), b"an older archive");
}

#[test]
fn an_etcd_snapshot_without_its_database_is_refused_not_restored_empty() {
    // What `repair snapshots` of an earlier cairn left of an etcd snapshot whose database
    // was in a lost pack: the snapshot, its facts, and no database. Restoring it said
    // "restored" and wrote nothing.
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let note = b"left over\n".to_vec();
    let root = raw_tree(vec![file_node(
        b"note.txt",
        vec![c.blob_id(&note)],
        note.len() as u64,
    )]);
    let snap = c.inject_snapshot_with(
        vec!["/note.txt".into(), "/snapshot_2026-12-07_010000.db".into()],
        &root,
        vec![],
        vec![note],
        |s| {
            s.source = cairn_format::snapshot::SourceKind::Etcd;
            s.facts = vec![
                ("etcd.file".into(), "/snapshot_2026-12-07_010000.db".into()),
                ("repaired.lost_files".into(), "1".into()),
            ];
        },
    );
    for layout in ["tree", "cluster-backup"] {
        let target = fx.path(layout);
        let out = fx.restore(&snap, &target, &["--layout", layout]);
        out.code_is(1).stderr_has(&[
            "holds no etcd database",
            "/snapshot_2026-12-07_010000.db",
            "removed 1 lost files",
            "nothing was written",
            "hint: restore another snapshot",
        ]);
        assert!(
            !target.exists(),
            "{layout}: a refused restore created the target"
        );
    }
    fx.restore(&snap, &fx.path("dry"), &["--dry-run"])
        .code_is(1);
    // Its other files can still be had, asked for by name.
    let target = fx.path("note");
    fx.restore(&snap, &target, &["--include", "/note.txt"]).ok();
    assert_eq!(fs::read(target.join("note.txt")).unwrap(), b"left over\n");
    // And it can be removed by id, whatever retention rules would keep.
    fx.id(&["forget", &snap[..8]]).ok();
    assert!(!fx.snapshot_ids().contains(&snap));
}

#[test]
fn a_long_name_below_a_blocked_directory_does_not_hide_it_from_the_preflight() {
    // `/a/<300 bytes>/x`, `/a/y`, `/b/<300>/<300>/x`, `/b/<300>/y`; the target has a file `a`.
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let content = b"x\n".to_vec();
    let file = |name: &[u8]| file_node(name, vec![c.blob_id(&content)], content.len() as u64);
    let long = |ch: u8| vec![ch; 300];
    let under_long = raw_tree(vec![file(b"x")]);
    let a = raw_tree(vec![
        dir_node(&long(b'l'), c.blob_id(&under_long)),
        file(b"y"),
    ]);
    let inner = raw_tree(vec![
        dir_node(&long(b'n'), c.blob_id(&under_long)),
        file(b"y"),
    ]);
    let b = raw_tree(vec![dir_node(&long(b'm'), c.blob_id(&inner))]);
    let root = raw_tree(vec![
        dir_node(b"a", c.blob_id(&a)),
        dir_node(b"b", c.blob_id(&b)),
    ]);
    let snap = c.inject_snapshot_at(
        vec!["/a".into(), "/b".into()],
        &root,
        vec![under_long, a, inner, b],
        vec![content],
    );
    let target = fx.dir("t");
    write_file(&target.join("a"), b"a file\n");
    let before = listing(&target);
    let out = fx.restore(&snap, &target, &["--include", "/a/y"]);
    out.code_is(1)
        .stderr_has(&["/a: the target has a file where the snapshot has a directory"]);
    assert_eq!(
        listing(&target),
        before,
        "a refused restore wrote something"
    );
    // Two long directories, one inside the other: the outer one is the conflict.
    let out = fx.restore(&snap, &target, &["--include", "/b/*/y"]);
    out.code_is(1)
        .stderr_has(&["its name is 300 bytes long", "nothing was written"]);
    assert_eq!(
        listing(&target),
        before,
        "a refused restore wrote something"
    );
}
