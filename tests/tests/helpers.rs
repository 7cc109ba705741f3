//! The test helpers themselves: the tree comparison must notice every kind of difference the
//! round-trip tests rely on, or those tests could not fail.

use cairn_e2e::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

fn build(root: &Path) {
    write_file(&root.join("f"), b"content");
    write_file(&root.join("d/g"), b"other");
    write_file(&root.join("h1"), b"linked");
    fs::hard_link(root.join("h1"), root.join("d/h2")).unwrap();
    symlink("f", root.join("l")).unwrap();
    xattr::set(root.join("f"), "user.k", b"v").unwrap();
    stamp_mtimes(root, 1_600_000_000);
}

/// A fresh identical copy (cp -a keeps modes, owners, times, xattrs and hard links).
fn copy(src: &Path, dst: &Path) {
    sh("cp", &["-a", s(src), s(dst)]);
    assert_trees_equal(src, dst);
}

#[test]
fn compare_trees_notices_every_difference() {
    let tmp = scratch();
    let a = tmp.path().join("a");
    build(&a);
    type Mutation = (&'static str, fn(&Path));
    let mutations: Vec<Mutation> = vec![
        ("content, same size", |b| {
            let m = fs::metadata(b.join("f")).unwrap();
            fs::write(b.join("f"), b"CONTENT").unwrap();
            let t = m.modified().unwrap();
            fs::File::options()
                .write(true)
                .open(b.join("f"))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }),
        ("mode", |b| chmod(&b.join("d/g"), 0o600)),
        ("setgid bit", |b| chmod(&b.join("d"), 0o2755)),
        ("mtime nanoseconds", |b| {
            let m = fs::symlink_metadata(b.join("d/g")).unwrap();
            use std::os::unix::fs::MetadataExt;
            set_mtime(
                &b.join("d/g"),
                m.mtime(),
                (m.mtime_nsec() as u32 + 1) % 1_000_000_000,
            );
        }),
        ("directory mtime", |b| set_mtime(&b.join("d"), 1, 0)),
        ("symlink mtime", |b| set_mtime(&b.join("l"), 1, 0)),
        ("xattr value", |b| {
            xattr::set(b.join("f"), "user.k", b"w").unwrap()
        }),
        ("xattr added", |b| {
            xattr::set(b.join("d"), "user.new", b"").unwrap()
        }),
        ("symlink target", |b| {
            fs::remove_file(b.join("l")).unwrap();
            symlink("d/g", b.join("l")).unwrap();
        }),
        ("owner", |b| {
            std::os::unix::fs::lchown(b.join("l"), Some(1234), Some(2345)).unwrap()
        }),
        ("extra file", |b| write_file(&b.join("d/extra"), b"")),
        ("missing file", |b| fs::remove_file(b.join("d/g")).unwrap()),
        ("hard link broken", |b| {
            use std::os::unix::fs::MetadataExt;
            let m = fs::metadata(b.join("d/h2")).unwrap();
            fs::remove_file(b.join("d/h2")).unwrap();
            fs::write(b.join("d/h2"), b"linked").unwrap();
            set_mtime(&b.join("d/h2"), m.mtime(), m.mtime_nsec() as u32);
        }),
        ("file became fifo", |b| {
            fs::remove_file(b.join("d/g")).unwrap();
            mkfifo(&b.join("d/g"), 0o644);
        }),
    ];
    for (i, (what, mutate)) in mutations.iter().enumerate() {
        if *what == "owner" && !is_root() {
            continue;
        }
        let b = tmp.path().join(format!("b{i}"));
        copy(&a, &b);
        mutate(&b);
        assert!(
            !compare_trees(&a, &b).is_empty(),
            "compare_trees missed a change of {what}"
        );
    }
}

#[test]
fn generated_data_is_deterministic_and_of_the_requested_kind() {
    assert_eq!(random_bytes(1, 1000), random_bytes(1, 1000));
    assert_ne!(random_bytes(1, 1000), random_bytes(2, 1000));
    assert_eq!(random_bytes(3, 13).len(), 13);
    let t = text_bytes(4, 100_000);
    assert_eq!(t.len(), 100_000);
    assert!(t.iter().all(|b| b.is_ascii()));
    // Random data has all byte values; text does not.
    let r = random_bytes(5, 100_000);
    let distinct = |v: &[u8]| v.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(distinct(&r), 256);
    assert!(distinct(&t) < 100);
}
