//! What a backup of host paths must get right when the file system is awkward: `..` in the
//! paths given, sparse files, trees deeper than restore follows, paths longer than PATH_MAX,
//! and files that change while they are read.

use cairn_e2e::*;
use rustix::fs::{self as rfs, Mode, OFlags};
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Run cairn from `cwd` on the fixture's repository with the write key.
fn wk_in(fx: &Fixture, cwd: &Path, args: &[&str]) -> Output {
    let env = fx.env();
    cairn_in(cwd, &fx.wk_args(args), &env_refs(&env))
}

#[test]
fn dot_dot_paths_back_up_the_directory_they_name() {
    let fx = Fixture::new();
    let top = fs::canonicalize(fx.dir("top")).unwrap();
    write_file(&top.join("kept.yaml"), b"kept\n");
    write_file(&top.join("a/b/inner.yaml"), b"inner\n");
    let inner = top.join("a/b");

    // `..` from a/b is a: its path is recorded resolved, and it holds b.
    let out = wk_in(&fx, &inner, &["--json", "backup", ".."]);
    out.ok();
    let snap = Fixture::snap_id(&out.json());
    let list = fx.wk(&["--json", "snapshots"]).json();
    assert_eq!(list[0]["paths"], serde_json::json!([s(&top.join("a"))]));
    let ls = fx.wk(&["ls", &snap]);
    ls.ok();
    assert!(
        ls.stdout
            .contains(&format!("{}/b/inner.yaml", s(&top.join("a")))),
        "{ls}"
    );
    assert!(!ls.stdout.contains("kept.yaml"), "{ls}");

    // `../..` is top, `./../.` is a.
    let out = wk_in(&fx, &inner, &["--json", "backup", "../.."]);
    out.ok();
    let list = fx.wk(&["--json", "snapshots"]).json();
    assert_eq!(list[1]["paths"], serde_json::json!([s(&top)]));
    let out = wk_in(&fx, &inner, &["--json", "backup", "./../."]);
    out.ok();
    let list = fx.wk(&["--json", "snapshots"]).json();
    assert_eq!(list[2]["paths"], serde_json::json!([s(&top.join("a"))]));

    // As many `..` as it takes to reach / is / and refused, however it is spelled.
    let ups = "../".repeat(inner.components().count() + 2);
    let out = wk_in(&fx, &inner, &["backup", &ups]);
    out.code_is(1).stderr_has(&["backing up / as a whole"]);
    let out = wk_in(&fx, &inner, &["backup", "/tmp/.."]);
    out.code_is(1).stderr_has(&["backing up / as a whole"]);
}

#[test]
fn a_symlink_to_a_directory_is_saved_as_the_link_with_a_warning_and_followed_with_a_slash() {
    let fx = Fixture::new();
    let real = fs::canonicalize(fx.dir("real")).unwrap();
    write_file(&real.join("manifests/etcd-pod.yaml"), b"pod\n");
    let link = fs::canonicalize(fx.dir("links"))
        .unwrap()
        .join("kubernetes");
    std::os::unix::fs::symlink(&real, &link).unwrap();

    // As given: the link, and a warning that says how to take the directory.
    let out = fx.wk(&["--json", "backup", s(&link)]);
    out.ok()
        .stderr_has(&["symlink to a directory", &format!("{}/", s(&link))]);
    let snap = Fixture::snap_id(&out.json());
    let ls = fx.wk(&["ls", &snap]);
    assert!(!ls.ok().stdout.contains("etcd-pod.yaml"), "{ls}");

    // With a trailing slash: the directory it points to, under its real path.
    let out = fx.wk(&["--json", "backup", &format!("{}/", s(&link))]);
    out.ok();
    assert!(!out.stderr.contains("symlink to a directory"), "{out}");
    let snap = Fixture::snap_id(&out.json());
    let list = fx.wk(&["--json", "snapshots"]).json();
    assert_eq!(list[1]["paths"], serde_json::json!([s(&real)]));
    let ls = fx.wk(&["ls", &snap]);
    assert!(
        ls.ok()
            .stdout
            .contains(&format!("{}/manifests/etcd-pod.yaml", s(&real))),
        "{ls}"
    );
}

/// Bytes the file system holds for `p` (not its length).
fn allocated(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().blocks() * 512
}

#[test]
fn sparse_files_are_saved_without_reading_holes_and_restored_sparse() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    let sparse = src.join("disk.img");
    let f = fs::File::create(&sparse).unwrap();
    let len: u64 = 64 << 30; // 64 GiB, almost all hole
    f.set_len(len).unwrap();
    let data = random_bytes(7, 1 << 20);
    for at in [0u64, 10 << 30, (40 << 30) + 12345, len - (1 << 20)] {
        f.write_all_at(&data, at).unwrap();
    }
    drop(f);
    if allocated(&sparse) > 64 << 20 {
        eprintln!("this file system does not keep holes; nothing to test");
        return;
    }
    // Reading 64 GiB of zeros and hashing them takes minutes here; skipping holes, seconds.
    let start = Instant::now();
    let r = fx.backup(&[&src]);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "backup of a 64 GiB sparse file took {took:?}: holes were read"
    );
    assert_eq!(num(&r, "bytes"), len);
    assert!(num(&r, "added_bytes") < 16 << 20, "{r}");
    let snap = Fixture::snap_id(&r);

    let target = fx.path("t");
    let out = fx.restore(&snap, &target, &[]);
    out.ok();
    let restored = Fixture::restored(&target, &sparse);
    assert_eq!(fs::metadata(&restored).unwrap().len(), len);
    assert!(
        allocated(&restored) < 64 << 20,
        "restored file allocates {} bytes: holes were written as zeros",
        allocated(&restored)
    );
    let back = fs::File::open(&restored).unwrap();
    for at in [0u64, 10 << 30, (40 << 30) + 12345, len - (1 << 20)] {
        let mut buf = vec![0; data.len()];
        back.read_exact_at(&mut buf, at).unwrap();
        assert!(buf == data, "data at {at} differs");
    }
    let mut buf = vec![1; 4096];
    back.read_exact_at(&mut buf, 20 << 30).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    // An unchanged re-backup reuses it; check with the identity verifies every blob.
    fx.backup(&[&src]);
    fx.id(&["check", "--read-data"]).ok();
}

#[test]
fn a_tree_deeper_than_restore_follows_is_refused_at_backup_and_the_rest_restores() {
    let fx = Fixture::new();
    let src = fx.dir("deep");
    write_file(&src.join("top.yaml"), b"top\n");
    let mut p = src.clone();
    for _ in 0..1100 {
        p.push("d");
    }
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("bottom"), b"bottom").unwrap();
    let out = fx.wk(&["--json", "backup", s(&src)]);
    out.code_is(3).stderr_has(&["deeper than"]);
    let r = out.json();
    let unreadable = r["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{out}");
    assert!(unreadable[0]["error"]
        .as_str()
        .unwrap()
        .contains("deeper than"));
    let snap = Fixture::snap_id(&r);
    // What was saved can be listed, audited and restored.
    fx.wk(&["ls", &snap]).ok();
    fx.id(&["check", "--read-data"]).ok();
    let target = fx.path("t");
    fx.restore(&snap, &target, &[]).ok();
    assert_eq!(
        fs::read(Fixture::restored(&target, &src).join("top.yaml")).unwrap(),
        b"top\n"
    );
}

#[test]
fn paths_longer_than_path_max_are_backed_up_and_restored() {
    let fx = Fixture::new();
    let src = fx.dir("long");
    let name = "n".repeat(200);
    // 25 levels of 200-byte names: over 5,000 bytes, beyond PATH_MAX (4,096), so made and read
    // back through directory descriptors.
    let mut dir = open_dir(&src);
    for _ in 0..25 {
        rfs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        dir = open_below(&dir, &name);
    }
    let f = rfs::openat(
        &dir,
        "f",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    rustix::io::write(&f, b"deep\n").unwrap();
    let r = fx.backup(&[&src]);
    assert_eq!(num(&r, "files"), 1, "{r}");
    let snap = Fixture::snap_id(&r);
    let target = fx.path("t");
    fx.restore(&snap, &target, &[]).ok();
    let mut dir = open_dir(&Fixture::restored(&target, &src));
    for _ in 0..25 {
        dir = open_below(&dir, &name);
    }
    let f = rfs::openat(&dir, "f", OFlags::RDONLY, Mode::empty()).unwrap();
    let mut buf = [0u8; 16];
    let n = rustix::io::read(&f, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"deep\n");
}

/// The directory `name` below `dir`, opened.
fn open_below(dir: &rustix::fd::OwnedFd, name: &str) -> rustix::fd::OwnedFd {
    rfs::openat(dir, name, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap()
}

fn open_dir(p: &Path) -> rustix::fd::OwnedFd {
    rfs::open(p, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap()
}

#[test]
fn a_file_changing_while_read_is_reported_and_the_backup_exits_3() {
    let fx = Fixture::new();
    let src = fx.dir("busy");
    write_file(&src.join("calm.yaml"), b"calm\n");
    let busy = src.join("busy.log");
    fs::write(&busy, vec![b'x'; 64 << 20]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (busy, stop) = (busy.clone(), stop.clone());
        std::thread::spawn(move || {
            let f = fs::OpenOptions::new().write(true).open(&busy).unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all_at(&i.to_le_bytes(), (i * 4096) % (64 << 20))
                    .unwrap();
                i += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let out = fx.wk(&["--json", "backup", s(&src)]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    out.code_is(3)
        .stderr_has(&["changed while being read", "busy.log"]);
    let r = out.json();
    assert_eq!(r["changed"], serde_json::json!([s(&busy)]), "{out}");
    assert_eq!(r["facts"]["changed_during_backup"], "1");
    // A file that stays still is saved without complaint the next time.
    let out = fx.wk(&["--json", "backup", s(&src)]);
    out.ok();
    assert_eq!(out.json()["changed"], serde_json::json!([]));
}

#[test]
fn special_files_are_not_opened_for_reading() {
    // A FIFO in the tree is recorded as a FIFO; the backup neither blocks on it nor reads it.
    let fx = Fixture::new();
    let src = fx.dir("special");
    write_file(&src.join("a.yaml"), b"a\n");
    let st = Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()
        .unwrap();
    assert!(st.success());
    let r = fx.backup(&[&src]);
    assert_eq!(num(&r, "files"), 1, "{r}");
    let ls = fx.wk(&["ls", "-l", &Fixture::snap_id(&r)]);
    ls.ok();
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.starts_with('p') && l.ends_with("/pipe")),
        "{ls}"
    );
}
