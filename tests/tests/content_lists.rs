//! Content lists (SPEC §9.1): an etcd database's page ids stored as list blobs, each day's
//! written relative to the previous day's. Backups of a real etcd changed in scattered places
//! restore byte-exact from every snapshot; the daily list costs a fraction of the inline ids;
//! prune keeps every list a snapshot's chain needs and drops the rest; copy carries them; a
//! damaged list is named by check and restore; trees written without lists (version 1, as
//! before) stay readable next to them.

use cairn_e2e::etcd::{self, Etcd};
use cairn_e2e::*;
use cairn_format::content_list::{ContentList, Op};
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::Id;
use std::fs;
use std::path::{Path, PathBuf};

/// Objects in the keyspace: ~2.5 KB each, ~10 MB, ~2,500 bbolt pages (lists start at 256).
const KEYS: usize = 4000;

/// Snapshot files of a real etcd over `days` days, each changing every 7th (then 11th, 13th,
/// …) key: changes land on pages scattered over the database.
fn etcd_days(fx: &Fixture, days: usize) -> Vec<PathBuf> {
    let e = Etcd::start();
    etcd::load_keyspace(&e, KEYS);
    let mut files = Vec::new();
    for day in 0..days {
        if day > 0 {
            etcd::update_keys(&e, KEYS, [7, 11, 13, 17][(day - 1) % 4], day as u64 + 1);
        }
        let f = fx.path(&format!("day-{}.db", day + 1));
        e.snapshot_save(&f);
        files.push(f);
    }
    files
}

/// `backup etcd --snapshot-file F` with the write key; returns (snapshot id, tree bytes added).
fn backup_file(fx: &Fixture, file: &Path) -> (String, u64) {
    let before = tree_bytes(fx);
    let out = fx.wk(&[
        "--json",
        "backup",
        "etcd",
        "--snapshot-file",
        s(file),
        "--host",
        "cp-0",
    ]);
    out.ok();
    (Fixture::snap_id(&out.json()), tree_bytes(fx) - before)
}

fn tree_bytes(fx: &Fixture) -> u64 {
    fx.store.list("tree").iter().map(|(_, n)| n).sum()
}

/// Restore `snap` into a fresh directory and return the one file's bytes.
fn restored(fx: &Fixture, snap: &str, name: &str) -> Vec<u8> {
    let dir = fx.path(name);
    fx.restore(snap, &dir, &[]).ok();
    let files = files_below(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    fs::read(&files[0]).unwrap()
}

#[test]
fn scattered_daily_changes_restore_from_every_snapshot_and_survive_prune_and_copy() {
    if !etcd::available(
        "scattered_daily_changes_restore_from_every_snapshot_and_survive_prune_and_copy",
    ) {
        return;
    }
    let fx = Fixture::new();
    let days = etcd_days(&fx, 4);
    let pages = fs::metadata(&days[0]).unwrap().len() / 4096;
    assert!(pages > 1000, "only {pages} pages");
    let mut snaps = Vec::new();
    for (i, f) in days.iter().enumerate() {
        let (snap, added) = backup_file(&fx, f);
        eprintln!("day {}: {pages} pages, {added} tree bytes added", i + 1);
        if i > 0 {
            // Inline, the ids alone would take 32 bytes a page; a delta list takes the
            // changed ones (and the tree pack's age and trailer overhead).
            assert!(
                added < pages * 32 / 3,
                "day {} added {added} tree bytes for {pages} pages",
                i + 1
            );
        }
        snaps.push(snap);
    }
    for (i, (snap, f)) in snaps.iter().zip(&days).enumerate() {
        assert!(
            restored(&fx, snap, &format!("out-{i}")) == fs::read(f).unwrap(),
            "day {} does not restore byte-exact",
            i + 1
        );
    }
    fx.id(&["check", "--read-data"]).ok();

    // Copy carries the list blobs (with their bases): the copy restores on its own.
    let dst = fx.fresh_store("copy");
    fx.run(&[
        "-r",
        &dst.location(),
        "-k",
        s(&fx.write_key),
        "init",
        "--like",
        s(&fx.repo),
        "--allow-host-retention",
    ])
    .ok();
    fx.wk(&["copy", "--to", &dst.location()]).ok();
    let out = fx.path("copied");
    fx.run(&[
        "-r",
        &dst.location(),
        "-i",
        s(&fx.identity),
        "restore",
        &snaps[3],
        "--target",
        s(&out),
    ])
    .ok();
    let files = files_below(&out);
    assert!(fs::read(&files[0]).unwrap() == fs::read(&days[3]).unwrap());
    fx.run(&[
        "-r",
        &dst.location(),
        "-i",
        s(&fx.identity),
        "check",
        "--read-data",
    ])
    .ok();

    // A fifth backup (day 1's file again: a list relative to day 4's), forgotten: prune
    // removes its list and tree and nothing else.
    let before = tree_bytes(&fx);
    let (fifth, added) = backup_file(&fx, &days[0]);
    assert!(added > 0);
    fx.store.delete(&format!("snapshots/{fifth}"));
    fx.id(&["prune", "--max-unused", "0"]).ok();
    assert_eq!(tree_bytes(&fx), before);

    // Forget days 1-3: day 4's list is written relative to them, so prune keeps them all.
    for snap in &snaps[..3] {
        fx.store.delete(&format!("snapshots/{snap}"));
    }
    fx.id(&["prune", "--max-unused", "0"]).ok();
    fx.id(&["check", "--read-data"]).ok();
    assert!(restored(&fx, &snaps[3], "after-prune") == fs::read(&days[3]).unwrap());

    // With nothing left, prune drops every list blob with the trees.
    fx.store.delete(&format!("snapshots/{}", snaps[3]));
    fx.id(&["prune", "--max-unused", "0"]).ok();
    assert_eq!(tree_bytes(&fx), 0, "{:?}", fx.store.list("tree"));
    fx.id(&["check", "--read-data"]).ok();
}

/// A file node stored with list `list` (and `size` bytes).
fn listed_file(name: &str, list: Id, size: u64) -> Node {
    let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    n.mode = 0o644;
    n.size = size;
    n.content_lists = vec![list];
    n
}

#[test]
fn damaged_content_lists_are_named_by_check_and_restore() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let chunks: Vec<Vec<u8>> = (0..300).map(|i| random_bytes(i, 64)).collect();
    let ids: Vec<Id> = chunks.iter().map(|b| c.blob_id(b)).collect();
    let size = 300 * 64;

    // A good list, a list copying beyond its base, and a list whose base is itself.
    let good = ContentList::full(&ids).encode();
    let beyond = ContentList {
        base: Some(c.blob_id(&good)),
        len: 300,
        ops: vec![Op::Copy {
            start: 100,
            count: 300,
        }],
    }
    .encode();
    let mut t = Tree {
        nodes: vec![
            listed_file("good.db", c.blob_id(&good), size),
            listed_file("beyond.db", c.blob_id(&beyond), size),
        ],
    };
    let root = t.encode();
    let snap = c.inject_snapshot_at(
        vec!["/beyond.db".into(), "/good.db".into()],
        &root,
        vec![good.clone(), beyond],
        chunks.clone(),
    );
    let out = fx.id(&["check"]);
    out.failed();
    for needle in [
        "DAMAGED content list blob",
        "\"beyond.db\"",
        "copy run",
        &snap[..8],
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} in {}", out.stdout);
    }
    assert!(!out.stdout.contains("good.db"), "{}", out.stdout);
    let out = fx.restore(&snap, &fx.path("r"), &[]);
    out.failed()
        .stderr_has(&["content list blob", "beyond.db", "copy run"]);

    // A list that is missing from the index is named as such.
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let missing = ContentList::full(&ids).encode();
    let mut t = Tree {
        nodes: vec![listed_file("gone.db", c.blob_id(&missing), size)],
    };
    let snap = c.inject_snapshot_at(vec!["/gone.db".into()], &t.encode(), vec![], chunks);
    let out = fx.id(&["check"]);
    out.failed();
    for needle in [&c.blob_id(&missing).to_hex()[..16], &snap[..8]] {
        assert!(out.stdout.contains(needle), "{needle:?} in {}", out.stdout);
    }
}

#[test]
fn long_files_in_path_backups_use_lists_and_version_1_trees_stay_readable() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    // Many small files (inline ids, trees stay version 1) and one long file whose chunks
    // change in scattered places between backups (a content list).
    for i in 0..20 {
        write_file(&src.join(format!("small-{i}")), &text_bytes(i, 3000));
    }
    let mut long = text_bytes(99, 24 << 20);
    write_file(&src.join("long.bin"), &long);
    let first = Fixture::snap_id(&fx.backup(&[&src]));
    for (k, at) in [(1u8, 3usize << 20), (2, 11 << 20), (3, 20 << 20)] {
        long[at..at + 100].fill(b'a' + k);
    }
    write_file(&src.join("long.bin"), &long);
    let second = Fixture::snap_id(&fx.backup(&[&src]));
    for snap in [&first, &second] {
        let out = fx.path(&format!("out-{}", &snap[..8]));
        fx.restore(snap, &out, &[]).ok();
        let back = Fixture::restored(&out, &src);
        assert!(fs::read(back.join("small-7")).unwrap() == text_bytes(7, 3000));
    }
    let back = Fixture::restored(&fx.path(&format!("out-{}", &second[..8])), &src);
    assert!(fs::read(back.join("long.bin")).unwrap() == long);
    let cat = fx.id(&["cat", &second, &format!("{}/long.bin", src.display())]);
    cat.ok();
    assert!(cat.stdout.as_bytes() == long.as_slice());
    fx.id(&["check", "--read-data"]).ok();
}

#[test]
fn trees_written_before_content_lists_stay_readable() {
    // A version-1 tree (the layout every earlier cairn wrote, encoded here with the version-1
    // encoder) holding a long file's 300 ids inline, as etcd backups were stored before.
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let chunks: Vec<Vec<u8>> = (0..300).map(|i| random_bytes(1000 + i, 4096)).collect();
    let ids: Vec<Id> = chunks.iter().map(|b| c.blob_id(b)).collect();
    let root = raw_tree(vec![file_node(b"old.db", ids, 300 * 4096)]);
    assert_eq!(&root[6..8], &1u16.to_le_bytes());
    let snap = c.inject_snapshot(&root, vec![], chunks.clone());
    let want: Vec<u8> = chunks.concat();
    assert!(restored(&fx, &snap, "old") == want);
    fx.id(&["check", "--read-data"]).ok();
    // A new tree next to it: version 2 with a list, both read by the same binary.
    let good = ContentList::full(&chunks.iter().map(|b| c.blob_id(b)).collect::<Vec<_>>()).encode();
    let mut t = Tree {
        nodes: vec![listed_file("new.db", c.blob_id(&good), 300 * 4096)],
    };
    let root = t.encode();
    assert_eq!(&root[6..8], &2u16.to_le_bytes());
    let snap2 = c.inject_snapshot_at(vec!["/new.db".into()], &root, vec![good], vec![]);
    assert!(restored(&fx, &snap2, "new") == want);
    fx.id(&["check", "--read-data"]).ok();
}

#[test]
fn repair_drops_only_the_files_whose_lists_are_lost() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let chunks: Vec<Vec<u8>> = (0..300).map(|i| random_bytes(2000 + i, 64)).collect();
    let ids: Vec<Id> = chunks.iter().map(|b| c.blob_id(b)).collect();
    let keep = text_bytes(5, 500);
    // One list never stored (its pack lost), one stored whose base is that lost list.
    let missing = ContentList::full(&ids).encode();
    let bad = ContentList {
        base: Some(c.blob_id(&missing)),
        len: 300,
        ops: vec![Op::Copy {
            start: 1,
            count: 300,
        }],
    }
    .encode();
    let mut sub = Tree {
        nodes: vec![
            listed_file("gone.db", c.blob_id(&missing), 300 * 64),
            listed_file("bad.db", c.blob_id(&bad), 300 * 64),
            file_node(b"keep.txt", vec![c.blob_id(&keep)], keep.len() as u64),
        ],
    };
    let sub = sub.encode();
    let root = raw_tree(vec![dir_node(b"d", c.blob_id(&sub))]);
    let mut data = chunks;
    data.push(keep.clone());
    let snap = c.inject_snapshot_at(vec!["/d".into()], &root, vec![sub, bad], data);
    let out = fx.id(&["--json", "repair", "snapshots"]);
    out.ok();
    let r = out.json();
    let repaired = r["repaired"].as_array().unwrap();
    assert_eq!(repaired.len(), 1, "{r}");
    assert_eq!(repaired[0]["original"], snap.as_str());
    assert_eq!(repaired[0]["lost_count"], 2, "{r}");
    let new = repaired[0]["new"].as_str().unwrap().to_string();
    let dir = fx.path("repaired");
    fx.restore(&new, &dir, &[]).ok();
    let files = files_below(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with("d/keep.txt"), "{files:?}");
    assert!(fs::read(&files[0]).unwrap() == keep);
}

#[test]
fn a_file_of_several_lists_restores_dedupes_its_unchanged_lists_and_survives_prune() {
    // 1 KiB average chunks: `seq` output of ~150 MB is ~125,000 blobs, so its ids are two
    // lists of at most 65,536 (a version-3 tree), as an etcd database over 256 MB is.
    let fx = Fixture::on_with(Backend::Local, &["--chunk-size", "1"]);
    let src = fx.dir("src");
    let mut numbers = sh("seq", &["1", "18000000"]);
    fs::write(src.join("n.txt"), &numbers).unwrap();
    let first = fx.wk(&["--json", "backup", s(&src)]).ok().json();
    assert!(num(&first, "blobs_added") > 65_536, "{first}");
    // One line near the end changes: the first list's ids do not, so the second backup
    // stores the same first list (the same blob: nothing new) and a new second one.
    let at = numbers.len() - 1000;
    numbers[at] = b'x';
    fs::write(src.join("n.txt"), &numbers).unwrap();
    let tree_before = tree_bytes(&fx);
    let second = fx.wk(&["--json", "backup", s(&src)]).ok().json();
    let tree_added = tree_bytes(&fx) - tree_before;
    // One list is ~2 MiB of ids; both would be ~4 MiB.
    assert!(
        tree_added < 3 << 20,
        "{tree_added} tree bytes added: {second}"
    );
    assert!(
        tree_added > 1 << 20,
        "{tree_added} tree bytes added: {second}"
    );
    let (first, second) = (Fixture::snap_id(&first), Fixture::snap_id(&second));

    fx.store.delete(&format!("snapshots/{first}"));
    fx.id(&["prune", "--max-unused", "0"]).ok();
    fx.id(&["check", "--read-data"]).ok();
    let out = fx.path("out");
    fx.restore(&second, &out, &[]).ok();
    assert!(fs::read(Fixture::restored(&out, &src).join("n.txt")).unwrap() == numbers);
    let cat = fx.id(&["cat", &second, &format!("{}/n.txt", src.display())]);
    assert!(cat.ok().stdout.as_bytes() == numbers.as_slice());

    // Copy carries every list: the copy checks and restores on its own.
    let dst = fx.fresh_store("copy").location();
    let on_dst = |args: &[&str]| {
        let mut all = vec!["-r", &dst, "-i", s(&fx.identity)];
        all.extend_from_slice(args);
        fx.run(&all).ok();
    };
    on_dst(&["init", "--like", s(&fx.repo)]);
    fx.wk(&["copy", "--to", &dst]).ok();
    on_dst(&["check", "--read-data"]);
    let copied = fx.path("copied");
    on_dst(&["restore", &second, "--target", s(&copied)]);
    assert!(fs::read(Fixture::restored(&copied, &src).join("n.txt")).unwrap() == numbers);
}
