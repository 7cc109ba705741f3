//! Deduplication and the files cache, measured on the repository's real size (on disk and in
//! an S3 bucket): an unchanged ~200 MB tree costs almost nothing to back up again and is not
//! read; one changed file is the only one read; identical content elsewhere is stored once.

use cairn_e2e::*;
use std::fs;
use std::path::Path;

const MB: usize = 1_000_000;

/// The test tree: 8 × `big` bytes incompressible, 8 × `big` compressible, `small` mixed
/// files of 200 KB in 10 directories. Returns the total size.
fn generate(root: &Path, big: usize, small: u64) -> u64 {
    let mut total = 0u64;
    for i in 0..8u64 {
        let d = random_bytes(100 + i, big);
        write_file(&root.join(format!("rand/r{i}.bin")), &d);
        let t = text_bytes(200 + i, big);
        write_file(&root.join(format!("text/t{i}.yaml")), &t);
        total += 2 * big as u64;
    }
    for i in 0..small {
        let mut d = text_bytes(1000 + i, 150_000);
        d.extend(random_bytes(2000 + i, 50_000));
        write_file(&root.join(format!("small/d{}/f{i}.dat", i % 10)), &d);
        total += d.len() as u64;
    }
    total
}

/// ~200 MB locally (8 × 10 MB incompressible, 8 × 10 MB compressible, 200 × 200 KB); a
/// quarter of that on S3, where the backend, not the size, is what is tested.
fn unchanged_tree_is_neither_read_nor_stored_again(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("src");
    let (big, small) = match backend {
        Backend::Local => (10 * MB, 200),
        Backend::S3 => (5 * MB / 2, 50),
    };
    let total = generate(&src, big, small);
    let files = 16 + small;
    let incompressible = 8 * big as u64 + small * 50_000;

    let empty = fx.repo_bytes();
    let r1 = fx.backup(&[&src]);
    let after1 = fx.repo_bytes();
    let grow1 = after1 - empty;
    assert_eq!(r1["bytes"].as_u64().unwrap(), total, "{r1}");
    assert_eq!(r1["files"].as_u64().unwrap(), files, "{r1}");
    assert_eq!(r1["files_read"].as_u64().unwrap(), files, "{r1}");
    // Random data cannot shrink (the big random files and a quarter of each small file); text
    // must compress.
    assert!(
        grow1 > incompressible,
        "first backup stored only {grow1} bytes"
    );
    assert!(
        grow1 < total * 3 / 4,
        "first backup stored {grow1} bytes of {total}: no compression?"
    );
    // The reported added bytes are the packs written (the repository also holds an index and
    // a snapshot object).
    let added1 = r1["added_bytes"].as_u64().unwrap();
    assert!(
        added1 <= grow1 && added1 > grow1 * 99 / 100,
        "added {added1}, grew {grow1}"
    );

    // Unchanged: < 1% of the data, nothing read.
    let s1 = Fixture::snap_id(&r1);
    let r2 = fx.backup(&[&src]);
    let grow2 = fx.repo_bytes() - after1;
    assert!(
        grow2 < total / 100,
        "unchanged re-backup grew the repository by {grow2} bytes"
    );
    assert_eq!(r2["files_read"].as_u64().unwrap(), 0, "{r2}");
    assert_eq!(r2["files"].as_u64().unwrap(), files, "{r2}");
    assert_eq!(r2["bytes"].as_u64().unwrap(), total, "{r2}");
    assert_eq!(r2["parent"].as_str().unwrap(), s1, "{r2}");
    let s2 = Fixture::snap_id(&r2);

    // Change 100 bytes in the middle of one big random file (same size): only it is read, and
    // only the chunks around the change are stored.
    let changed = src.join("rand/r3.bin");
    let mut d = fs::read(&changed).unwrap();
    for b in &mut d[big / 2..big / 2 + 100] {
        *b ^= 0x5a;
    }
    fs::write(&changed, &d).unwrap();
    let before3 = fx.repo_bytes();
    let r3 = fx.backup(&[&src]);
    let grow3 = fx.repo_bytes() - before3;
    assert_eq!(r3["files_read"].as_u64().unwrap(), 1, "{r3}");
    assert!(grow3 > 0);
    assert!(
        grow3 < 2 * MB as u64,
        "a 100-byte change re-stored {grow3} bytes"
    );
    let s3 = Fixture::snap_id(&r3);
    let out = fx.wk(&["--json", "diff", &s2, &s3]);
    out.ok();
    let changes = out.json()["changes"].as_array().unwrap().clone();
    assert_eq!(changes.len(), 1, "{out}");
    assert_eq!(changes[0]["path"], s(&changed));
    assert_eq!(changes[0]["change"], "modified");
    let out = fx.id(&["cat", &s3, s(&changed)]);
    out.ok();
    assert!(out.stdout_bytes == d, "cat of the changed file differs");
    let out = fx.id(&["cat", &s1, s(&changed)]);
    out.ok();
    assert!(
        out.stdout_bytes != d,
        "the old snapshot shows the new content"
    );

    // The same content under another path (no parent snapshot for it): read once, stored
    // once.
    let copy = fx.path("copy");
    write_file(
        &copy.join("dup-of-t5.yaml"),
        &fs::read(src.join("text/t5.yaml")).unwrap(),
    );
    let before4 = fx.repo_bytes();
    let r4 = fx.backup(&[&copy]);
    let grow4 = fx.repo_bytes() - before4;
    assert_eq!(r4["files_read"].as_u64().unwrap(), 1, "{r4}");
    assert!(
        grow4 < 100_000,
        "a duplicate {big}-byte file grew the repository by {grow4}"
    );

    // --force reads everything again but still stores nothing new.
    let before5 = fx.repo_bytes();
    let out = fx.wk(&["--json", "backup", "--force", s(&src)]);
    out.ok();
    let r5 = out.json();
    assert_eq!(r5["files_read"].as_u64().unwrap(), files, "{r5}");
    assert!(fx.repo_bytes() - before5 < total / 100);
}
backend_tests!(unchanged_tree_is_neither_read_nor_stored_again);

fn a_touched_file_with_the_same_content_is_read_but_adds_nothing(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("src");
    write_file(&src.join("a.bin"), &random_bytes(7, 3 * MB));
    write_file(&src.join("b.bin"), &random_bytes(8, 3 * MB));
    fx.backup(&[&src]);
    // New mtime and ctime, same bytes.
    set_mtime(&src.join("a.bin"), 1_700_000_000, 5);
    let before = fx.repo_bytes();
    let r = fx.backup(&[&src]);
    assert_eq!(r["files_read"].as_u64().unwrap(), 1, "{r}");
    assert!(fx.repo_bytes() - before < 50_000);
    // The metadata change shows up in diff as metadata only.
    let out = fx.wk(&["--json", "snapshots"]);
    out.ok();
    let list = out.json();
    let (a, b) = (
        list[0]["id"].as_str().unwrap().to_string(),
        list[1]["id"].as_str().unwrap().to_string(),
    );
    let out = fx.wk(&["--json", "diff", &a, &b]);
    out.ok();
    let changes = out.json()["changes"].as_array().unwrap().clone();
    assert_eq!(changes.len(), 1, "{out}");
    assert_eq!(changes[0]["change"], "metadata");
}
backend_tests!(a_touched_file_with_the_same_content_is_read_but_adds_nothing);

fn concurrent_backups_into_one_repository_both_restore(backend: Backend) {
    let fx = Fixture::on(backend);
    let shared = random_bytes(70, 4 * MB);
    let a = fx.path("a");
    let b = fx.path("b");
    write_file(&a.join("shared.bin"), &shared);
    write_file(&a.join("own-a.bin"), &random_bytes(71, 3 * MB));
    write_file(&b.join("shared.bin"), &shared);
    write_file(&b.join("own-b.bin"), &random_bytes(72, 3 * MB));
    let (ra, rb) = std::thread::scope(|sc| {
        let ta = sc.spawn(|| fx.backup(&[&a]));
        let tb = sc.spawn(|| fx.backup(&[&b]));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for (r, src, name) in [(&ra, &a, "ta"), (&rb, &b, "tb")] {
        let target = fx.path(name);
        fx.restore(&Fixture::snap_id(r), &target, &[]).ok();
        assert_trees_equal(src, &Fixture::restored(&target, src));
    }
    assert_eq!(fx.object_names("snapshots").len(), 2);
}
backend_tests!(concurrent_backups_into_one_repository_both_restore);
