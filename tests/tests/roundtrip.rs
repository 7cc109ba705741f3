//! Round trip: every kind of metadata a control-plane host tree carries is backed up with the
//! write key and restored with the identity exactly; and the listing commands (`ls`, `cat`,
//! `snapshots`) and restore options (`--include`, `--overwrite`) behave as documented. The
//! repository-facing tests run on a local directory and on S3 (`name::local`, `name::s3`).

use cairn_e2e::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

const BIG: usize = 12 * 1024 * 1024 + 12345;

/// Build a tree with every metadata kind under `src` (the device node is left out when the
/// kernel refuses mknod).
fn build_tree(src: &Path) {
    fs::create_dir_all(src).unwrap();
    write_file(&src.join("empty"), b"");
    write_file(&src.join("small.txt"), b"hello, control plane\n");
    chmod(&src.join("small.txt"), 0o600);
    write_file(&src.join("medium.bin"), &random_bytes(1, 300_000));
    chmod(&src.join("medium.bin"), 0o755);
    let mut big = random_bytes(2, BIG / 2);
    big.extend(text_bytes(3, BIG - BIG / 2));
    write_file(&src.join("big.bin"), &big);
    write_file(&src.join("setgid.sh"), b"#!/bin/sh\necho sg\n");
    chmod(&src.join("setgid.sh"), 0o2755);
    write_file(&src.join("setuid"), b"suid");
    chmod(&src.join("setuid"), 0o4750);
    write_file(&src.join("name with spaces & ünïcode"), b"names");
    // A name that is not UTF-8.
    write_file(
        &src.join(std::ffi::OsStr::from_bytes(b"raw-\xff\xfe-name")),
        b"raw",
    );

    // Nested directories with unusual modes.
    write_file(&src.join("a/b/c/d/deep.txt"), &text_bytes(4, 5000));
    write_file(&src.join("private/secret.key"), &random_bytes(5, 4096));
    chmod(&src.join("private/secret.key"), 0o400);
    chmod(&src.join("private"), 0o700);
    write_file(&src.join("readonly/ro.txt"), b"read only dir content");
    chmod(&src.join("readonly"), 0o555);
    fs::create_dir_all(src.join("sticky")).unwrap();
    chmod(&src.join("sticky"), 0o1777);
    fs::create_dir_all(src.join("emptydir")).unwrap();

    // Symlinks: relative, absolute, dangling, to a directory.
    symlink("../../small.txt", src.join("a/b/rel-link")).unwrap();
    symlink("/etc/hostname", src.join("abs-link")).unwrap();
    symlink("does/not/exist", src.join("dangling")).unwrap();
    symlink("a/b", src.join("dir-link")).unwrap();

    // Hard links: a pair across directories and a triple.
    write_file(&src.join("hl-one"), &random_bytes(6, 70_000));
    fs::hard_link(src.join("hl-one"), src.join("a/hl-two")).unwrap();
    write_file(&src.join("a/b/tri-1"), b"three names, one inode");
    fs::hard_link(src.join("a/b/tri-1"), src.join("a/b/tri-2")).unwrap();
    fs::hard_link(src.join("a/b/tri-1"), src.join("private/tri-3")).unwrap();

    // Special files.
    mkfifo(&src.join("fifo"), 0o640);
    if !mknod_char(&src.join("null-dev"), 1, 3) {
        eprintln!("note: mknod refused; the tree has no device node");
    }

    // Extended attributes in the user namespace, including a binary value.
    xattr::set(src.join("small.txt"), "user.cairn.test", b"value-1").unwrap();
    xattr::set(
        src.join("medium.bin"),
        "user.binary",
        &[0u8, 1, 2, 255, 254],
    )
    .unwrap();
    xattr::set(src.join("medium.bin"), "user.empty", b"").unwrap();
    xattr::set(src.join("private"), "user.dir-attr", b"on a directory").unwrap();

    // Owners (as root).
    if is_root() {
        std::os::unix::fs::chown(src.join("medium.bin"), Some(1234), Some(2345)).unwrap();
        std::os::unix::fs::chown(src.join("a/b"), Some(1234), Some(2345)).unwrap();
        std::os::unix::fs::chown(src.join("setgid.sh"), Some(0), Some(2345)).unwrap();
        // chown clears setgid; put it back.
        chmod(&src.join("setgid.sh"), 0o2755);
        std::os::unix::fs::lchown(src.join("dangling"), Some(1234), Some(2345)).unwrap();
        std::os::unix::fs::chown(src.join("fifo"), Some(1234), Some(0)).unwrap();
    }

    // Nanosecond mtimes everywhere, children first.
    stamp_mtimes(src, 1_500_000_000);
}

fn round_trip_every_metadata_kind_byte_exact(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("src");
    build_tree(&src);

    let report = fx.backup(&[&src]);
    let snap = Fixture::snap_id(&report);
    assert_eq!(snap.len(), 64, "{report}");
    // 13 regular files + 3 extra hard-link names (each name is a file entry).
    let files = report["files"].as_u64().unwrap();
    assert_eq!(files, 16, "{report}");
    assert_eq!(report["files_read"].as_u64().unwrap(), files, "{report}");
    assert!(
        report["unreadable"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let expected_bytes: u64 = files_below(&src)
        .iter()
        .map(|p| fs::symlink_metadata(p).unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert_eq!(
        report["bytes"].as_u64().unwrap(),
        expected_bytes,
        "{report}"
    );

    let target = fx.path("restored");
    // setuid/setgid files and device nodes are created only when asked.
    fx.restore(&snap, &target, &[]).code_is(1).stderr_has(&[
        "setuid",
        "device node",
        "--allow-privileged",
    ]);
    assert!(!target.exists());
    let out = fx.restore(&snap, &target, &["--allow-privileged"]);
    out.ok();
    assert!(out.stdout.contains("verified"), "{out}");
    let restored = Fixture::restored(&target, &src);
    assert_trees_equal(&src, &restored);

    // Spot checks that would catch a comparison helper that silently compares nothing.
    let m = fs::symlink_metadata(restored.join("setgid.sh")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o2755);
    let big = fs::read(restored.join("big.bin")).unwrap();
    assert_eq!(big.len(), BIG);
    assert_eq!(big, fs::read(src.join("big.bin")).unwrap());
    assert_eq!(
        fs::symlink_metadata(restored.join("hl-one")).unwrap().ino(),
        fs::symlink_metadata(restored.join("a/hl-two"))
            .unwrap()
            .ino()
    );
    assert_eq!(
        xattr::get(restored.join("medium.bin"), "user.binary").unwrap(),
        Some(vec![0u8, 1, 2, 255, 254])
    );
    if is_root() {
        let m = fs::symlink_metadata(restored.join("medium.bin")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 2345));
        let m = fs::symlink_metadata(restored.join("dangling")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 2345));
    }
    assert_eq!(
        fs::read_link(restored.join("dangling")).unwrap(),
        Path::new("does/not/exist")
    );
    let mtime = fs::symlink_metadata(restored.join("small.txt")).unwrap();
    assert_ne!(mtime.mtime_nsec(), 0, "nanoseconds must survive");
    // No temporary files left behind.
    assert!(files_below(&target)
        .iter()
        .all(|p| !p.to_string_lossy().contains(".cairn-restore-")));
}
backend_tests!(round_trip_every_metadata_kind_byte_exact);

fn ls_cat_and_snapshots_show_what_was_saved(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("src");
    build_tree(&src);
    let out = fx.wk(&[
        "--json",
        "backup",
        "--tag",
        "daily",
        "--tag",
        "e2e",
        "--host",
        "master-0",
        s(&src),
    ]);
    out.ok();
    let report = out.json();
    let snap = Fixture::snap_id(&report);
    let srcs = s(&src);

    // ls: every path, absolute, one per line.
    let out = fx.wk(&["ls", &snap]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    for rel in [
        "",
        "/small.txt",
        "/a/b/c/d/deep.txt",
        "/a/b/rel-link",
        "/fifo",
        "/private/tri-3",
        "/emptydir",
        "/name with spaces & ünïcode",
    ] {
        let want = format!("{srcs}{rel}");
        assert!(lines.contains(&want.as_str()), "ls lacks {want}\n{out}");
    }
    // Ancestors of the backed-up path are listed too (the root mirrors absolute paths).
    assert!(lines.contains(&s(src.parent().unwrap())), "{out}");

    // ls with a path: only below it.
    let out = fx.wk(&["ls", &snap, &format!("{srcs}/a/b")]);
    out.ok();
    assert!(
        out.stdout
            .lines()
            .all(|l| l.starts_with(&format!("{srcs}/a/b"))),
        "{out}"
    );
    assert!(out.stdout.contains("deep.txt"), "{out}");
    let out = fx.wk(&["ls", &snap, &format!("{srcs}/no/such/dir")]);
    out.failed().stderr_has(&["not in the snapshot"]);

    // ls -l: mode string, owner, size, symlink target.
    let out = fx.wk(&["ls", "-l", &snap]);
    out.ok();
    let line = |suffix: &str| {
        out.stdout
            .lines()
            .find(|l| l.ends_with(suffix))
            .unwrap_or_else(|| panic!("no ls -l line ending in {suffix}\n{out}"))
            .to_string()
    };
    let l = line(&format!("{srcs}/small.txt"));
    assert!(l.starts_with("-rw-------"), "{l}");
    assert!(l.contains(" 21 "), "size of small.txt in {l}");
    assert!(l.contains("2017-"), "mtime year in {l}");
    let l = line(&format!("{srcs}/abs-link -> /etc/hostname"));
    assert!(l.starts_with('l'), "{l}");
    let l = line(&format!("{srcs}/fifo"));
    assert!(l.starts_with('p'), "{l}");
    let l = line(&format!("{srcs}/private"));
    assert!(l.starts_with("drwx------"), "{l}");
    if is_root() {
        let l = line(&format!("{srcs}/medium.bin"));
        assert!(l.contains("1234") && l.contains("2345"), "{l}");
    }

    // ls --json: machine-readable fields.
    let out = fx.wk(&["--json", "ls", &snap]);
    out.ok();
    let items = out.json();
    let items = items.as_array().unwrap();
    let get = |rel: &str| {
        let p = format!("{srcs}{rel}");
        items
            .iter()
            .find(|i| i["path"] == p.as_str())
            .unwrap_or_else(|| panic!("no JSON item for {p}"))
            .clone()
    };
    let b = get("/big.bin");
    assert_eq!(b["type"], "file");
    assert_eq!(b["size"].as_u64().unwrap(), BIG as u64);
    assert_eq!(get("/setgid.sh")["mode"], "2755");
    assert_eq!(get("/sticky")["mode"], "1777");
    assert_eq!(get("/sticky")["type"], "dir");
    let l = get("/a/b/rel-link");
    assert_eq!(l["type"], "symlink");
    assert_eq!(l["target"], "../../small.txt");
    assert_eq!(get("/fifo")["type"], "fifo");
    if is_root() {
        let m = get("/medium.bin");
        assert_eq!(m["uid"], 1234);
        assert_eq!(m["gid"], 2345);
        assert_eq!(get("/small.txt")["user"], "root");
    }
    assert!(get("/small.txt")["mtime"]
        .as_str()
        .unwrap()
        .starts_with("2017-"));

    // cat: exact bytes, binary-safe, identity only.
    let out = fx.id(&["cat", &snap, &format!("{srcs}/big.bin")]);
    out.ok();
    assert_eq!(out.stdout_bytes, fs::read(src.join("big.bin")).unwrap());
    let out = fx.id(&["cat", &snap, &format!("{srcs}/empty")]);
    out.ok();
    assert!(out.stdout_bytes.is_empty());
    let out = fx.id(&["cat", "latest", &format!("{srcs}/private/tri-3")]);
    out.ok();
    assert_eq!(out.stdout_bytes, b"three names, one inode");
    // cat of a directory or a missing file fails.
    fx.id(&["cat", &snap, &format!("{srcs}/a")]).failed();
    fx.id(&["cat", &snap, &format!("{srcs}/nope")])
        .failed()
        .stderr_has(&["not in the snapshot"]);

    // snapshots --json: the fields an operator's tooling relies on.
    let out = fx.wk(&["--json", "snapshots"]);
    out.ok();
    let list = out.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let s0 = &list[0];
    assert_eq!(s0["id"], snap.as_str());
    assert_eq!(s0["host"], "master-0");
    assert_eq!(s0["source"], "paths");
    assert_eq!(s0["paths"], serde_json::json!([srcs]));
    assert_eq!(s0["tags"], serde_json::json!(["daily", "e2e"]));
    assert_eq!(s0["tree"].as_str().unwrap().len(), 64);
    assert!(s0["parent"].is_null());
    assert!(s0["program"].as_str().unwrap().starts_with("cairn "));
    assert!(s0["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s0["stats"]["files"], report["files"]);
    assert_eq!(s0["stats"]["bytes"], report["bytes"]);
    assert_eq!(s0["stats"]["files_read"], report["files_read"]);
    assert_eq!(s0["stats"]["unreadable"], 0);
    assert!(s0["stats"]["dirs"].as_u64().unwrap() >= 9);
    // Text listing names the snapshot by its short id.
    let out = fx.wk(&["snapshots"]);
    out.ok();
    assert!(out.stdout.contains(&snap[..8]), "{out}");
    assert!(out.stdout.contains("1 snapshot\n"), "{out}");
    // Filters.
    let out = fx.wk(&["--json", "snapshots", "--host", "other"]);
    out.ok();
    assert_eq!(out.json(), serde_json::json!([]));
    let out = fx.wk(&["--json", "snapshots", "--tag", "daily"]);
    out.ok();
    assert_eq!(out.json().as_array().unwrap().len(), 1);
    // Unique prefixes resolve; unknown ones do not.
    fx.wk(&["ls", &snap[..10]]).ok();
    fx.wk(&["ls", "ffffffffffffffff"])
        .failed()
        .stderr_has(&["no snapshot matches"]);
}
backend_tests!(ls_cat_and_snapshots_show_what_was_saved);

fn restore_include_only_restores_matching_paths(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("src");
    build_tree(&src);
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let target = fx.path("partial");
    fx.restore(&snap, &target, &["--include", "**/private"])
        .ok();
    let restored = Fixture::restored(&target, &src);
    // The matching directory and everything below it, byte-exact (tri-3's other names are
    // not restored, so its link count differs).
    let d = compare_trees_opt(&src.join("private"), &restored.join("private"), false);
    assert!(d.is_empty(), "{}", d.join("\n"));
    // Nothing else: only the directories leading to it.
    let mut files: Vec<String> = files_below(&target)
        .iter()
        .map(|p| p.strip_prefix(&restored).unwrap().display().to_string())
        .collect();
    files.sort();
    assert_eq!(files, vec!["private/secret.key", "private/tri-3"]);
    assert!(!restored.join("small.txt").exists());
    assert!(!restored.join("a").exists());

    // A file glob.
    let target = fx.path("partial2");
    fx.restore(&snap, &target, &["--include", "*.txt"]).ok();
    let restored = Fixture::restored(&target, &src);
    let mut files: Vec<String> = files_below(&target)
        .iter()
        .map(|p| p.strip_prefix(&restored).unwrap().display().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec!["a/b/c/d/deep.txt", "readonly/ro.txt", "small.txt"]
    );
    assert_eq!(
        fs::read(restored.join("a/b/c/d/deep.txt")).unwrap(),
        fs::read(src.join("a/b/c/d/deep.txt")).unwrap()
    );
}
backend_tests!(restore_include_only_restores_matching_paths);

#[test]
fn restore_refuses_to_overwrite_unless_asked() {
    let fx = Fixture::new();
    let src = fx.path("src");
    fs::create_dir_all(&src).unwrap();
    write_file(&src.join("config.yaml"), b"original: true\n");
    write_file(&src.join("sub/other.yaml"), b"other: 1\n");
    stamp_mtimes(&src, 1_600_000_000);
    let snap = Fixture::snap_id(&fx.backup(&[&src]));

    let target = fx.path("t");
    let restored = Fixture::restored(&target, &src);
    write_file(&restored.join("config.yaml"), b"local edit\n");
    let out = fx.restore(&snap, &target, &[]);
    out.failed()
        .stderr_has(&["config.yaml", "already exists", "--overwrite"]);
    assert_eq!(
        fs::read(restored.join("config.yaml")).unwrap(),
        b"local edit\n",
        "a refused restore must leave the existing file alone"
    );

    let out = fx.restore(&snap, &target, &["--overwrite"]);
    out.ok();
    assert_trees_equal(&src, &restored);
    // Restoring the same snapshot again over itself with --overwrite is idempotent.
    fx.restore(&snap, &target, &["--overwrite"]).ok();
    assert_trees_equal(&src, &restored);
}

#[test]
fn hard_links_with_non_utf8_names_round_trip() {
    let fx = Fixture::new();
    let src = fx.path("src");
    let raw = src.join(std::ffi::OsStr::from_bytes(b"a\xff"));
    write_file(&raw, b"linked content");
    fs::hard_link(&raw, src.join("b")).unwrap();
    stamp_mtimes(&src, 1_600_000_000);
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let target = fx.path("t");
    fx.restore(&snap, &target, &[]).ok();
    assert_trees_equal(&src, &Fixture::restored(&target, &src));
}

#[test]
fn ls_long_shows_special_permission_bits_like_ls() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("setgid"), b"x");
    chmod(&src.join("setgid"), 0o2755);
    write_file(&src.join("setuid"), b"x");
    chmod(&src.join("setuid"), 0o4744);
    fs::create_dir_all(src.join("sticky")).unwrap();
    chmod(&src.join("sticky"), 0o1777);
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let out = fx.wk(&["ls", "-l", &snap]);
    out.ok();
    let line = |suffix: &str| {
        out.stdout
            .lines()
            .find(|l| l.ends_with(suffix))
            .unwrap_or_else(|| panic!("no line for {suffix}\n{out}"))
            .to_string()
    };
    assert!(
        line("/setgid").starts_with("-rwxr-sr-x"),
        "{}",
        line("/setgid")
    );
    assert!(
        line("/setuid").starts_with("-rwsr--r--"),
        "{}",
        line("/setuid")
    );
    assert!(
        line("/sticky").starts_with("drwxrwxrwt"),
        "{}",
        line("/sticky")
    );
}

#[test]
fn xattrs_of_symlinks_and_fifos_round_trip() {
    if !is_root() {
        eprintln!("note: trusted.* attributes need root; skipping");
        return;
    }
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("file"), b"f");
    symlink("file", src.join("link")).unwrap();
    mkfifo(&src.join("fifo"), 0o600);
    // user.* is not allowed on symlinks and FIFOs; trusted.* is (as root), like
    // security.selinux on an SELinux host.
    xattr::set(src.join("file"), "trusted.label", b"file_t").unwrap();
    xattr::set(src.join("link"), "trusted.label", b"link_t").unwrap();
    xattr::set(src.join("fifo"), "trusted.label", b"fifo_t").unwrap();
    stamp_mtimes(&src, 1_600_000_000);
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let target = fx.path("t");
    let out = fx.restore(&snap, &target, &[]);
    out.ok();
    assert_trees_equal(&src, &Fixture::restored(&target, &src));
}
