//! Restore and copy hold the index entries of the snapshot they read, not of the whole
//! repository (store/src/partial_index.rs; copy sorts the entries on disk): restoring a small
//! snapshot from a repository of ~250,000 other blobs (11 MB of in-memory index) peaks no
//! higher than from a repository holding it alone (copy: but for its sort's run), and both
//! still restore it byte for byte and copy it whole. Backup holds
//! the data packs' blob ids on disk (store/src/id_file.rs): backing the snapshot up into the
//! large repository peaks no higher either, and still finds what is stored (exactly).

use cairn_e2e::rss::{cairn_with_rss, copy_checked_with_rss};
use cairn_e2e::small_fs::SmallFs;
use cairn_e2e::*;

/// Allowed difference in peak RSS: well under the ~11 MB the large repository's whole index
/// would take in memory (44 bytes per blob), well over run-to-run noise.
const SLACK: u64 = 4 << 20;

/// An external sort's run in memory (store/src/record_sort.rs, `RUN_BYTES`).
const SORT_RUN: u64 = 4 << 20;

#[test]
fn restore_and_copy_of_a_small_snapshot_do_not_hold_the_whole_index() {
    // 1 KiB average chunks: `seq` output (~250 MB, compressible, every chunk distinct) gives
    // ~210,000 blobs, about 10 MB of index objects; 1 MiB packs, so that index objects are
    // written every 32,768 blobs as a large backup writes them (not one per pack of all).
    let big = Fixture::on_with(Backend::Local, &["--chunk-size", "1", "--pack-size", "1"]);
    let alone = Fixture::on_with(Backend::Local, &["--chunk-size", "1", "--pack-size", "1"]);
    big.wk(&[
        "backup",
        "stdin",
        "--filename",
        "numbers.txt",
        "--",
        "seq",
        "1",
        "30000000",
    ])
    .ok();
    let src = big.dir("small");
    let mut rng = Rng::new(7);
    let mut bytes = vec![0u8; 3 << 20];
    rng.fill(&mut bytes);
    std::fs::write(src.join("data.bin"), &bytes).unwrap();
    // Part of what the large repository holds: `seq` output again, whose chunks are stored;
    // ~15 MB, over 8,192 blobs: restored, its blobs' entries are set aside on disk by the
    // partial index and joined with its ids (store/src/restore/plan_file.rs).
    let numbers = big.dir("numbers");
    std::fs::write(numbers.join("n.txt"), sh("seq", &["1", "2000000"])).unwrap();
    let mut peaks = Vec::new();
    let mut backup_peaks = Vec::new();
    for fx in [&big, &alone] {
        let env = fx.env();
        let (out, backup_rss) =
            cairn_with_rss(&fx.wk_args(&["--json", "backup", s(&src)]), &env_refs(&env));
        out.ok();
        let report = out.json();
        let snap = Fixture::snap_id(&report);
        backup_peaks.push(backup_rss);
        // Every blob of the new file is new; read again (--force), none is (a tree may be).
        let added = num(&report, "blobs_added");
        assert!(added > 2_000, "{report}");
        let again = fx.wk(&["--json", "backup", "--force", s(&src)]);
        let again = again.ok().json();
        assert_eq!(num(&again, "files_read"), 1, "{again}");
        assert!(num(&again, "blobs_added") <= 2, "{again}");
        let target = fx.tmp.path().join("out");
        let (out, rss) = cairn_with_rss(
            &fx.id_args(&["restore", &snap, "--target", s(&target)]),
            &env_refs(&env),
        );
        out.ok();
        assert_eq!(
            std::fs::read(Fixture::restored(&target, &src).join("data.bin")).unwrap(),
            bytes
        );
        let target = fx.tmp.path().join("out-copy");
        let copy_rss = copy_checked_with_rss(fx, &snap, &["--target", s(&target)]);
        assert_eq!(
            std::fs::read(Fixture::restored(&target, &src).join("data.bin")).unwrap(),
            bytes
        );
        peaks.push((rss, copy_rss));
    }
    let blobs = num(&big.id(&["check", "--json"]).ok().json(), "blobs");
    assert!(blobs > 200_000, "{blobs} blobs");
    // The data blobs the large repository holds are found on disk: a file whose chunks it
    // stored already adds (almost) nothing, and what it adds reads back.
    let report = big.backup(&[&numbers]);
    let added = num(&report, "blobs_added");
    assert!(added < 20, "{report}");
    let numbers_snap = Fixture::snap_id(&report);
    let target = big.tmp.path().join("out-numbers");
    big.restore(&numbers_snap, &target, &[]).ok();
    assert_eq!(
        std::fs::read(Fixture::restored(&target, &numbers).join("n.txt")).unwrap(),
        sh("seq", &["1", "2000000"])
    );
    full_tmpdir(&big, &numbers_snap, &numbers);
    let (big_backup, alone_backup) = (backup_peaks[0], backup_peaks[1]);
    assert!(
        big_backup < alone_backup + SLACK,
        "backup peaked at {} KiB into {blobs} blobs, {} KiB into an empty repository",
        big_backup >> 10,
        alone_backup >> 10
    );
    let ((big_restore, big_copy), (alone_restore, alone_copy)) = (peaks[0], peaks[1]);
    assert!(
        big_restore < alone_restore + SLACK,
        "restore peaked at {} KiB from {blobs} blobs, {} KiB from the snapshot alone",
        big_restore >> 10,
        alone_restore >> 10
    );
    // Copy sorts the source's data entries by id on disk (store/src/copy.rs): one sort run
    // in memory, a fixed 4 MiB once the repository holds more than a run's worth, whatever
    // it holds beyond that; the whole index would be 44 bytes a blob on top.
    assert!(
        big_copy < alone_copy + SLACK + SORT_RUN,
        "copy peaked at {} KiB from {blobs} blobs, {} KiB from the snapshot alone",
        big_copy >> 10,
        alone_copy >> 10
    );
}

/// With TMPDIR on a full file system (a 64 KiB tmpfs), what needs temporary files from the
/// large repository still works, in memory, saying so: restore (the index's data entries set
/// aside, then a plan of over 8,192 blobs), copy, and prune (the index objects' entries).
fn full_tmpdir(big: &Fixture, snap: &str, numbers: &std::path::Path) {
    let Some(small) = SmallFs::mount_sized(&big.tmp.path().join("tmpdir"), "64k") else {
        eprintln!("note: cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN); skipping the full TMPDIR part");
        return;
    };
    let tmp = [("TMPDIR", small.dir.as_os_str())];
    let target = big.tmp.path().join("out-full-tmpdir");
    big.run_env(
        &big.id_args(&["restore", snap, "--target", s(&target)]),
        &tmp,
    )
    .ok()
    .stderr_has(&[
        "no space left",
        "point tmpdir elsewhere",
        "reading the index objects again",
        "plan is held in memory",
    ]);
    assert_eq!(
        std::fs::read(Fixture::restored(&target, numbers).join("n.txt")).unwrap(),
        sh("seq", &["1", "2000000"])
    );
    let to = big.fresh_store("copy-full-tmpdir").location();
    let id = s(&big.identity);
    big.run(&["-r", &to, "-i", id, "init", "--like", s(&big.repo)])
        .ok();
    big.run_env(&big.id_args(&["copy", "--to", &to, snap]), &tmp)
        .ok()
        .stderr_has(&["reading the index objects again"]);
    big.run(&["-r", &to, "-i", id, "check", "--read-data"]).ok();
    big.run_env(
        &big.id_args(&["forget", "--keep-last", "1", "--prune"]),
        &tmp,
    )
    .ok()
    .stderr_has(&["index entries are held in memory"]);
    big.id(&["check"]).ok();
}
