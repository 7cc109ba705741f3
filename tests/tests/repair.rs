//! `cairn repair index` and `cairn repair snapshots` end to end: a deleted index is rebuilt
//! from pack trailers and every snapshot restores byte for byte; a write key rebuilds the tree
//! entries and says data packs need the identity; a damaged pack is skipped and named; a lost
//! data pack makes `repair snapshots` write a `repaired` snapshot without the lost file; and
//! `--dry-run` changes nothing; on a local directory and on S3 alike.

use cairn_e2e::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// What a snapshot holds: every regular file by path relative to its source, with its bytes.
type Files = BTreeMap<String, Vec<u8>>;

/// A source directory of a few files with distinct content.
fn source(fx: &Fixture) -> PathBuf {
    let src = fx.dir("src");
    write_file(&src.join("a.bin"), &random_bytes(1, 300_000));
    write_file(&src.join("sub/b.txt"), b"hello, repair\n");
    write_file(&src.join("sub/deeper/c.bin"), &random_bytes(2, 70_000));
    src
}

/// A repository on `backend` with one backup of a [`source`] directory: the fixture, the
/// source, the snapshot and the files it holds.
fn backed_up_source(backend: Backend) -> (Fixture, PathBuf, String, Files) {
    let fx = Fixture::on(backend);
    let src = source(&fx);
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let files = file_map(&src);
    (fx, src, snap, files)
}

/// Every regular file below `dir`, by path relative to it, with its bytes.
fn file_map(dir: &Path) -> Files {
    files_below(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let rel = s(p.strip_prefix(dir).unwrap()).to_string();
            (rel, fs::read(&p).unwrap())
        })
        .collect()
}

/// Restore `snap` and check every file is byte-exact to `expected` (file content and names
/// only: removing a file from the source changes its directory's mtime).
fn restore_equal(fx: &Fixture, snap: &str, src: &Path, expected: &Files, name: &str) {
    let target = fx.path(name);
    fx.restore(snap, &target, &[]).ok();
    let got = file_map(&Fixture::restored(&target, src));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "restored file names"
    );
    assert!(got == *expected, "restored file contents differ");
}

fn deleted_index_is_rebuilt_and_every_snapshot_restores(backend: Backend) {
    let (fx, src, s1, e1) = backed_up_source(backend);
    write_file(&src.join("new.bin"), &random_bytes(3, 50_000));
    let s2 = Fixture::snap_id(&fx.backup(&[&src]));
    let e2 = file_map(&src);
    for name in fx.object_names("index") {
        fx.store.delete(&name);
    }
    let out = fx.id(&["--json", "repair", "index"]);
    out.ok();
    let r = out.json();
    assert_eq!(r["damaged"].as_array().unwrap().len(), 0);
    assert_eq!(r["data_needs_identity"], false);
    assert!(!fx.object_names("index").is_empty());
    // Running it again replaces the rebuilt index with an equivalent one.
    fx.id(&["repair", "index"]).ok();
    restore_equal(&fx, &s2, &src, &e2, "r2");
    restore_equal(&fx, &s1, &src, &e1, "r1");
    fx.id(&["check"]).ok();
}
backend_tests!(deleted_index_is_rebuilt_and_every_snapshot_restores);

fn write_key_rebuilds_tree_entries_and_keeps_data_entries(backend: Backend) {
    let (fx, src, snap, expected) = backed_up_source(backend);
    let out = fx.wk(&["repair", "index"]);
    out.ok();
    assert!(
        out.stdout.contains("data packs need the identity"),
        "{}",
        out.stdout
    );
    let out = fx.wk(&["--json", "repair", "index"]);
    out.ok();
    let r = out.json();
    assert_eq!(r["data_needs_identity"], true);
    assert!(r["packs_kept_from_index"].as_u64().unwrap() >= 1);
    assert!(r["packs_read"].as_u64().unwrap() >= 1);
    // The data entries were carried over: everything still restores.
    restore_equal(&fx, &snap, &src, &expected, "r");
    // With no index at all a write key rebuilds the trees (ls works) but not the data.
    for name in fx.object_names("index") {
        fx.store.delete(&name);
    }
    let out = fx.wk(&["--json", "repair", "index"]);
    out.code_is(3);
    assert!(
        out.json()["packs_unreadable_needs_identity"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let ls = fx.wk(&["ls", &snap]);
    ls.ok();
    assert!(ls.stdout.contains("b.txt"), "{}", ls.stdout);
    // The identity then completes the index.
    fx.id(&["repair", "index"]).ok();
    restore_equal(&fx, &snap, &src, &expected, "r2");
}
backend_tests!(write_key_rebuilds_tree_entries_and_keeps_data_entries);

fn damaged_pack_is_skipped_and_named(backend: Backend) {
    let (fx, ..) = backed_up_source(backend);
    let data = fx.object_names("data");
    let victim = &data[0];
    fx.store.flip_bits(victim, -1, 0xff);
    let out = fx.id(&["repair", "index"]);
    out.code_is(3);
    let name = victim.rsplit('/').next().unwrap();
    out.stderr_has(&["damaged pack", name]);
    let out = fx.id(&["--json", "repair", "index"]);
    out.code_is(3);
    let damaged = out.json()["damaged"].as_array().unwrap().clone();
    assert_eq!(damaged.len(), 1);
    assert!(damaged[0]["pack"].as_str().unwrap().contains(name));
}
backend_tests!(damaged_pack_is_skipped_and_named);

fn lost_data_pack_gives_a_repaired_snapshot_without_the_file(backend: Backend) {
    let (fx, src, s1, e1) = backed_up_source(backend);
    let before: Vec<String> = fx.object_names("data");
    write_file(&src.join("sub/lost.bin"), &random_bytes(9, 40_000));
    let s2 = Fixture::snap_id(&fx.backup(&[&src]));
    let new: Vec<String> = fx
        .object_names("data")
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(new.len(), 1, "the second backup adds one data pack");
    fx.store.delete(&new[0]);

    // --dry-run changes nothing.
    let listing = fx.store.list("");
    let out = fx.id(&["--json", "repair", "snapshots", "--dry-run"]);
    out.ok();
    let r = out.json();
    assert_eq!(r["repaired"].as_array().unwrap().len(), 1);
    let lost = r["repaired"][0]["lost"][0].as_str().unwrap();
    assert!(lost.ends_with("/sub/lost.bin"), "{lost}");
    fx.id(&["repair", "index", "--dry-run"]).ok();
    assert_eq!(
        fx.store.list(""),
        listing,
        "--dry-run changed the repository"
    );

    let out = fx.wk(&["--json", "repair", "snapshots"]);
    out.ok();
    let r = out.json();
    let repaired = r["repaired"].as_array().unwrap();
    assert_eq!(repaired.len(), 1);
    assert_eq!(repaired[0]["original"], s2.as_str());
    assert_eq!(repaired[0]["lost_count"], 1);
    let s3 = repaired[0]["new"].as_str().unwrap().to_string();
    assert!(
        !fx.store.exists(&format!("snapshots/{s2}")),
        "original kept"
    );
    let list = fx.wk(&["--json", "snapshots"]);
    list.ok();
    let list = list.json();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == s3.as_str())
        .expect("repaired snapshot listed")
        .clone();
    assert!(entry["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "repaired"));
    // Everything but the lost file, byte for byte.
    restore_equal(&fx, &s3, &src, &e1, "r3");
    restore_equal(&fx, &s1, &src, &e1, "r1");
    // Nothing left to repair.
    let out = fx.id(&["--json", "repair", "snapshots"]);
    out.ok();
    assert_eq!(out.json()["repaired"].as_array().unwrap().len(), 0);
}
backend_tests!(lost_data_pack_gives_a_repaired_snapshot_without_the_file);

fn repair_snapshots_refuses_to_drop_files_an_index_repair_would_bring_back(backend: Backend) {
    let (fx, src, s1, e1) = backed_up_source(backend);
    let first_index = fx.object_names("index");
    write_file(&src.join("new.bin"), &random_bytes(3, 50_000));
    let s2 = Fixture::snap_id(&fx.backup(&[&src]));
    let e2 = file_map(&src);
    // The first backup's index object is lost: its packs are stored but in no index.
    assert_eq!(first_index.len(), 1);
    fx.store.delete(&first_index[0]);
    let snapshots = fx.object_names("snapshots");

    let dry = fx.id(&["--json", "repair", "snapshots", "--dry-run"]);
    let r = dry.json();
    assert!(r["unindexed_packs"].as_u64().unwrap() >= 2, "{dry}");
    assert_eq!(r["repaired"].as_array().unwrap().len(), 1, "{dry}");
    let failed = r["failed"].to_string();
    assert!(failed.contains("repair index"), "{dry}");

    let out = fx.id(&["repair", "snapshots"]);
    out.code_is(1)
        .stderr_has(&["stored but listed in no index", "cairn repair index"]);
    assert_eq!(fx.object_names("snapshots"), snapshots, "nothing changed");

    fx.id(&["repair", "index"]).ok();
    let r = fx.id(&["--json", "repair", "snapshots"]).json();
    assert_eq!(r["repaired"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["failed"].as_array().unwrap().len(), 0, "{r}");
    restore_equal(&fx, &s1, &src, &e1, "r1");
    restore_equal(&fx, &s2, &src, &e2, "r2");
}
backend_tests!(repair_snapshots_refuses_to_drop_files_an_index_repair_would_bring_back);

#[test]
fn an_etcd_snapshot_that_lost_its_database_is_not_repaired_into_an_empty_one() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let db = "/snapshot_2026-12-07_010000.db";
    // The database's one blob is in no pack (its pack was lost).
    let root = raw_tree(vec![file_node(
        &db.as_bytes()[1..],
        vec![c.blob_id(b"a page that was lost")],
        4096,
    )]);
    let snap = c.inject_snapshot_with(vec![db.into()], &root, vec![], vec![], |s| {
        s.source = cairn_format::snapshot::SourceKind::Etcd;
        s.facts = vec![("etcd.file".into(), db.into())];
    });
    let out = fx.id(&["repair", "snapshots"]);
    out.code_is(3).stderr_has(&[
        &format!("snapshots/{snap}"),
        &format!("its etcd database {db} is lost"),
        &format!("cairn forget {}", &snap[..8]),
    ]);
    // Left as it is: still the same damaged snapshot, not a "repaired" one that restores
    // nothing.
    assert_eq!(fx.snapshot_ids(), std::slice::from_ref(&snap));
    fx.id(&["forget", &snap]).ok();
    assert!(fx.snapshot_ids().is_empty());
}

#[test]
fn a_file_whose_data_the_index_does_not_list_is_named_with_the_repair_steps() {
    let (fx, _, snap, _) = backed_up_source(Backend::Local);
    for pack in fx.object_names("data") {
        fx.store.delete(&pack);
    }
    fx.id(&["repair", "index"]).ok();
    let out = fx.restore(&snap, &fx.path("t"), &[]);
    out.code_is(1).stderr_has(&[
        "is not in the repository index",
        "hint: run `cairn check`",
        "`cairn repair snapshots` drops",
    ]);
}
