//! `cairn prune` end to end (SPEC.md §11): it frees what no snapshot needs and nothing else;
//! `--dry-run` changes nothing; a write key deletes but never repacks data; running backups
//! keep a marker pending (exit code 3) and their snapshots restore; backups that start after a
//! marker never reuse condemned packs; a backup paused past its lease expiry must not commit;
//! foreign, expired and unreadable leases are handled as documented; and `kill -9` of a prune
//! or a backup at every point leaves a repository that the next prune finishes, where every
//! snapshot restores byte for byte.
//!
//! Forgetting is done here by deleting `snapshots/<id>` objects, as `cairn forget` does.
//! Backups are held mid-run with SIGSTOP once their lease shows they have loaded the index, so
//! the races are deterministic. Kill points are made exact with strace's `inject` (SIGKILL on
//! entering the n-th rename, unlink or link call of one thread, for every n until the run
//! completes) when strace works here, plus timed kills.

use cairn_e2e::background::*;
use cairn_e2e::repo_objects::*;
use cairn_e2e::versions::*;
use cairn_e2e::*;
use cairn_format::gc::{LeaseKind, LeaseRecord};
use cairn_format::index::IndexRecord;
use cairn_format::pack::PackKind;
use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Forget a snapshot (what `cairn forget` will do): delete its object.
fn forget(fx: &Fixture, snap: &str) {
    fx.store.delete(&format!("snapshots/{snap}"));
}

/// `cairn --json prune` with the identity (plus `extra` arguments and environment).
fn prune_id(fx: &Fixture, extra: &[&str], env: &[(&str, &OsStr)]) -> Output {
    let mut a = vec!["-r", s(&fx.repo), "-i", s(&fx.identity), "--json", "prune"];
    a.extend_from_slice(extra);
    fx.run_env(&a, env)
}

/// `cairn --json prune` with the write key.
fn prune_wk(fx: &Fixture, extra: &[&str]) -> Output {
    let mut a = vec!["--json", "prune"];
    a.extend_from_slice(extra);
    fx.wk(&a)
}

/// The counts of a prune report that say what it decided (a dry run reports the same).
const PLAN: [&str; 5] = [
    "unused_packs",
    "unindexed_packs",
    "repacked_packs",
    "blobs_rewritten",
    "bytes_condemned",
];

/// The counts of a prune report that say what it did.
const DONE: [&str; 3] = ["packs_deleted", "bytes_freed", "packs_rescued"];

/// A prune (with the identity and `extra` arguments) completes and finds nothing to do.
#[track_caller]
fn assert_prune_has_nothing_to_do(fx: &Fixture, extra: &[&str], ctx: &str) {
    let out = prune_id(fx, extra, &[]);
    out.ok();
    let v = out.json();
    for k in PLAN.iter().chain(&DONE) {
        assert_eq!(num(&v, k), 0, "{ctx}: {k} should be 0 in {v:#}");
    }
    assert!(v["marker"].is_null(), "{ctx}: no marker expected: {v:#}");
    assert_eq!(v["markers_pending"], serde_json::json!([]), "{ctx}: {v:#}");
}

/// A prune (with the identity) completes and leaves no marker pending; its report.
#[track_caller]
fn prune_sweeps(fx: &Fixture) -> Value {
    let out = prune_id(fx, &[], &[]);
    out.ok();
    let r = out.json();
    assert_eq!(r["markers_pending"], serde_json::json!([]), "{r:#}");
    r
}

/// Every field of a prune report is there with the right type.
#[track_caller]
fn assert_report_shape(v: &Value, dry_run: bool) {
    assert_eq!(v["dry_run"], Value::Bool(dry_run), "{v:#}");
    for k in PLAN.iter().chain(&DONE).chain(&["repack_needs_identity"]) {
        num(v, k);
    }
    assert!(v["marker"].is_null() || v["marker"].is_string(), "{v:#}");
    assert!(v["markers_swept"].is_array(), "{v:#}");
    assert!(v["markers_pending"].is_array(), "{v:#}");
}

/// The source trees backed up here (see [`Versions`]).
const TREE: Versions = Versions {
    changing: 6,
    unique: 200_000,
    notes: 40_000,
    configs: 8,
};

// ---------------------------------------------------------------------------------------------
// Running cairn in the background
// ---------------------------------------------------------------------------------------------

/// True if process `pid` has a file whose path ends with `name` open.
fn has_open(pid: u32, name: &str) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|rd| {
        rd.filter_map(|e| e.ok())
            .any(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().ends_with(name)))
    })
}

/// Start `cairn --json backup src` (src must hold `zz-big.bin`) with the write key and hold it
/// (SIGSTOP) once it has loaded the index and is reading the big file (so it has looked up its
/// parent and decided about every other file). Panics if it already wrote its snapshot.
fn start_and_hold_backup(fx: &Fixture, src: &Path, env: &[(&str, &OsStr)]) -> (Bg, LeaseRecord) {
    let before = fx.object_names("snapshots");
    let mut bg = fx.spawn_wk(&["--json", "backup", s(src)], env);
    // Past the lease, the index, the parent lookup and the unchanged files: reading the big
    // file, last in the walk. Polling /proc is cheap, so this comes first; reading the lease
    // objects back (a listing and a GET each on S3) takes long enough for a fast backup to end.
    let pid = bg.pid();
    bg.wait_for("it opens zz-big.bin", Duration::from_micros(500), || {
        has_open(pid, "zz-big.bin").then_some(())
    });
    bg.stop();
    let (_, rec) = wait_for_loaded_lease(fx, &fx.store, &mut bg);
    assert_eq!(
        fx.object_names("snapshots"),
        before,
        "the backup wrote its snapshot before it could be held: make its input bigger"
    );
    (bg, rec)
}

/// Back up a tree of small files (see [`write_reusable_tree`]) from directory `name` of `fx`;
/// returns the directory and the snapshot.
fn back_up_reusable_tree(fx: &Fixture, name: &str) -> (PathBuf, String) {
    let src = fx.path(name);
    write_reusable_tree(&src);
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    (src, snap)
}

/// Small files a parent snapshot holds (reused by later backups).
fn write_reusable_tree(src: &Path) {
    for i in 0..20u64 {
        write_file(
            &src.join(format!("a{i:02}.conf")),
            &random_bytes(700 + i, 40_000),
        );
    }
}

/// A large new file, read last (what keeps a backup busy after it has loaded the index).
fn write_big(src: &Path, backend: Backend) {
    write_file(
        &src.join("zz-big.bin"),
        &random_bytes(777, big_size(backend)),
    );
}

fn big_size(backend: Backend) -> usize {
    match backend {
        Backend::Local => 96 * MB,
        Backend::S3 => 48 * MB,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Basic
// ---------------------------------------------------------------------------------------------

/// Five versions backed up, the three oldest forgotten: `--dry-run` reports and changes
/// nothing; prune deletes exactly the packs it reports (their sizes add up to `bytes_freed`),
/// repacks partly used packs, leaves no marker or lease, and the kept snapshots restore byte
/// for byte; a second prune finds nothing to do and changes nothing.
fn prune_frees_space_and_keeps_every_remaining_snapshot(backend: Backend) {
    let fx = Fixture::on(backend);
    let versions = TREE.back_up(&fx, 0, 5);
    for (snap, _) in &versions[..3] {
        forget(&fx, snap);
    }

    // Dry run: a report, no change.
    let before = fx.store.contents();
    let dry = prune_id(&fx, &["--dry-run"], &[]);
    dry.ok();
    let d = dry.json();
    assert_report_shape(&d, true);
    assert!(num(&d, "unused_packs") >= 1, "{d:#}");
    assert!(
        num(&d, "repacked_packs") >= 1,
        "the oldest data packs are partly used: {d:#}"
    );
    assert!(num(&d, "blobs_rewritten") >= 1, "{d:#}");
    assert!(num(&d, "bytes_condemned") > 0, "{d:#}");
    assert_eq!(num(&d, "packs_deleted"), 0, "{d:#}");
    assert_eq!(num(&d, "bytes_freed"), 0, "{d:#}");
    assert!(d["marker"].is_null(), "{d:#}");
    assert!(
        fx.store.contents() == before,
        "prune --dry-run changed the repository"
    );
    let text = fx.id(&["prune", "--dry-run"]);
    text.ok();
    assert!(text.stdout.contains("would condemn"), "{text}");
    assert!(
        fx.store.contents() == before,
        "prune --dry-run changed the repository"
    );

    // The real thing.
    let packs_before = packs(&fx.store);
    let bytes_before = fx.repo_bytes();
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    let r = out.json();
    assert_report_shape(&r, false);
    for k in PLAN {
        assert_eq!(
            r[k], d[k],
            "dry run and prune disagree on {k}: {d:#} vs {r:#}"
        );
    }
    let marker = r["marker"]
        .as_str()
        .expect("a marker was written")
        .to_string();
    assert_eq!(r["markers_swept"], serde_json::json!([marker]), "{r:#}");
    assert_eq!(r["markers_pending"], serde_json::json!([]), "{r:#}");
    assert_eq!(num(&r, "packs_rescued"), 0, "{r:#}");
    assert_eq!(
        num(&r, "packs_deleted"),
        num(&r, "unused_packs") + num(&r, "repacked_packs") + num(&r, "unindexed_packs"),
        "{r:#}"
    );
    assert_eq!(num(&r, "bytes_freed"), num(&r, "bytes_condemned"), "{r:#}");

    let packs_after = packs(&fx.store);
    let removed: Vec<(&String, &u64)> = packs_before
        .iter()
        .filter(|(n, _)| !packs_after.contains_key(*n))
        .collect();
    let added: u64 = packs_after
        .iter()
        .filter(|(n, _)| !packs_before.contains_key(*n))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(removed.len() as u64, num(&r, "packs_deleted"), "{r:#}");
    assert_eq!(
        removed.iter().map(|(_, n)| **n).sum::<u64>(),
        num(&r, "bytes_freed"),
        "bytes_freed is not the size of the packs that disappeared: {r:#}"
    );
    assert!(added > 0, "repacking wrote no pack: {r:#}");
    assert!(
        added < num(&r, "bytes_freed"),
        "repacking wrote {added} bytes for {} freed",
        num(&r, "bytes_freed")
    );
    let bytes_after = fx.repo_bytes();
    assert!(
        bytes_after < bytes_before,
        "repository did not shrink: {bytes_before} → {bytes_after}"
    );
    assert!(
        fx.object_names("gc").is_empty(),
        "{:?}",
        fx.object_names("gc")
    );
    assert!(
        fx.object_names("locks").is_empty(),
        "{:?}",
        fx.object_names("locks")
    );
    assert_eq!(fx.object_names("snapshots").len(), 2);

    for (snap, src) in &versions[3..] {
        assert_restores(&fx, s(&fx.repo), snap, src, "after prune");
    }

    // Nothing left to do, and doing it changes nothing.
    let contents = fx.store.contents();
    assert_prune_has_nothing_to_do(&fx, &[], "second prune");
    assert!(
        fx.store.contents() == contents,
        "a prune with nothing to do changed the repository"
    );
    let text = fx.id(&["prune"]);
    text.ok();
    assert!(text.stdout.contains("deleted 0 packs"), "{text}");

    // And a new backup still deduplicates against what is left.
    let r = fx.backup(&[&versions[4].1]);
    assert_eq!(num(&r, "files_read"), 0, "{r:#}");
    assert!(
        num(&r, "added_bytes") < 10_000,
        "unchanged data stored again: {r:#}"
    );
}
backend_tests!(prune_frees_space_and_keeps_every_remaining_snapshot);

#[test]
fn max_unused_is_validated_and_bounds_repacking() {
    let fx = Fixture::new();
    for bad in ["101", "-1", "abc", "5x"] {
        let out = fx.id(&["prune", "--max-unused", bad]);
        out.code_is(2);
    }
    let versions = TREE.back_up(&fx, 0, 4);
    forget(&fx, &versions[0].0);
    // 100 %: partly used packs are never repacked, only wholly unused ones go.
    let r = prune_id(&fx, &["--max-unused", "100", "--dry-run"], &[]);
    r.ok();
    let r = r.json();
    assert_eq!(num(&r, "repacked_packs"), 0, "{r:#}");
    let r = prune_id(&fx, &["--max-unused", "100%"], &[]);
    r.ok();
    let r = r.json();
    assert_eq!(num(&r, "repacked_packs"), 0, "{r:#}");
    let after_100 = pack_bytes(&fx.store);
    // 0 %: every pack with any unused byte is repacked; then nothing is left to do even at 0.
    let r = prune_id(&fx, &["--max-unused", "0"], &[]);
    r.ok();
    let r = r.json();
    assert!(num(&r, "repacked_packs") >= 1, "{r:#}");
    assert!(pack_bytes(&fx.store) < after_100);
    assert_prune_has_nothing_to_do(&fx, &["--max-unused", "0"], "second prune at 0 %");
    for (snap, src) in &versions[1..] {
        assert_restores(&fx, s(&fx.repo), snap, src, "after --max-unused 0");
    }
}

/// Prune refuses to run while a snapshot or an index object cannot be read (what they
/// reference would look unused) and deletes nothing; while a referenced blob is in no index,
/// packs no index lists are kept (they may hold it).
#[test]
fn prune_refuses_on_unreadable_snapshots_or_index_and_deletes_nothing() {
    let fx = Fixture::new();
    let versions = TREE.back_up(&fx, 0, 3);
    forget(&fx, &versions[0].0);
    let check_refused = |what: &str, needles: &[&str]| {
        let before = fx.store.contents();
        let out = prune_id(&fx, &[], &[]);
        out.failed().stderr_has(needles);
        assert!(
            fx.store.contents() == before,
            "prune changed the repository although {what}"
        );
        prune_id(&fx, &["--dry-run"], &[]).failed();
    };

    // A damaged snapshot object.
    let victim = format!("snapshots/{}", versions[1].0);
    let original = fx.store.read(&victim).unwrap();
    fx.store.flip_byte(&victim);
    check_refused("a snapshot is damaged", &["snapshot", &versions[1].0[..8]]);
    fx.store.write(&victim, &original);

    // An index object that is not one.
    let idx = fx.object_names("index");
    let victim = idx[0].clone();
    let original = fx.store.read(&victim).unwrap();
    fx.store.write(&victim, b"garbage");
    check_refused("an index object is damaged", &["index"]);
    fx.store.write(&victim, &original);

    // Every index object lost: no snapshot's trees can be found.
    let saved: Vec<(String, Vec<u8>)> = idx
        .iter()
        .map(|n| (n.clone(), fx.store.read(n).unwrap()))
        .collect();
    for n in &idx {
        fx.store.delete(n);
    }
    check_refused("the index is lost", &["prune stopped"]);
    for (n, b) in &saved {
        fx.store.write(n, b);
    }

    // Only the first backup's index object lost: the kept snapshots reference blobs in its
    // (now unindexed) data pack, so no unindexed pack may be condemned.
    let data_before: BTreeSet<String> = fx.object_names("data").into_iter().collect();
    // The index object listing the oldest version's data pack: the one with the most blobs.
    let first_index = idx
        .iter()
        .max_by_key(|n| {
            read_meta(&fx, &fx.store, n)
                .and_then(|p| IndexRecord::decode(&p).ok())
                .map(|r| {
                    r.packs
                        .iter()
                        .filter(|p| p.kind == PackKind::Data)
                        .map(|p| p.blobs.len())
                        .sum::<usize>()
                })
                .unwrap_or(0)
        })
        .cloned();
    if let Some(first) = first_index {
        let bytes = fx.store.read(&first).unwrap();
        fx.store.delete(&first);
        let out = prune_id(&fx, &[], &[]);
        out.ok();
        let r = out.json();
        assert_eq!(num(&r, "unindexed_packs"), 0, "{r:#}");
        let data_after: BTreeSet<String> = fx.object_names("data").into_iter().collect();
        assert_eq!(
            data_after, data_before,
            "data packs deleted while blobs were unindexed: {r:#}"
        );
        fx.store.write(&first, &bytes);
    }

    // Repaired: prune works and the kept snapshots restore.
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    for (snap, src) in &versions[1..] {
        assert_restores(&fx, s(&fx.repo), snap, src, "after the refusals");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Write key
// ---------------------------------------------------------------------------------------------

/// With a write key, prune deletes wholly unused packs (data and tree), repacks no data pack,
/// reports partly used data packs as needing the identity, and every kept snapshot restores.
/// The identity then repacks them.
#[test]
fn prune_with_a_write_key_deletes_but_never_repacks_data() {
    let fx = Fixture::new();
    // S1: keep.bin + drop.bin; S2: only keep.bin (drop.bin deleted): S1's data pack is then
    // partly used. S3: other data, forgotten: wholly unused packs.
    let d = fx.path("d");
    write_file(&d.join("keep.bin"), &random_bytes(1, 400_000));
    write_file(&d.join("drop.bin"), &random_bytes(2, 1_500_000));
    let s1 = Fixture::snap_id(&fx.backup(&[&d]));
    let shared_pack: BTreeSet<String> = fx.object_names("data").into_iter().collect();
    fs::remove_file(d.join("drop.bin")).unwrap();
    let s2 = Fixture::snap_id(&fx.backup(&[&d]));
    let other = fx.path("other");
    write_file(&other.join("x.bin"), &random_bytes(3, 700_000));
    let s3 = Fixture::snap_id(&fx.backup(&[&other]));
    let other_packs: Vec<String> = packs(&fx.store)
        .into_keys()
        .filter(|n| !shared_pack.contains(n))
        .collect();
    forget(&fx, &s1);
    forget(&fx, &s3);

    let data_before: BTreeSet<String> = fx.object_names("data").into_iter().collect();
    let out = prune_wk(&fx, &[]);
    out.ok();
    let r = out.json();
    assert_report_shape(&r, false);
    assert!(
        num(&r, "repack_needs_identity") >= 1,
        "the partly used data pack should need the identity: {r:#}"
    );
    assert!(num(&r, "unused_packs") >= 2, "{r:#}");
    assert!(num(&r, "packs_deleted") >= 2, "{r:#}");
    assert!(num(&r, "bytes_freed") > 700_000, "{r:#}");
    let data_after: BTreeSet<String> = fx.object_names("data").into_iter().collect();
    assert!(
        data_after.is_subset(&data_before),
        "a write key wrote data packs: {:?}",
        data_after.difference(&data_before).collect::<Vec<_>>()
    );
    for p in &shared_pack {
        assert!(
            data_after.contains(p),
            "the partly used data pack {p} was deleted by a write key"
        );
    }
    let store_names: BTreeSet<String> = packs(&fx.store).into_keys().collect();
    let other_data: Vec<&String> = other_packs
        .iter()
        .filter(|p| p.starts_with("data/"))
        .collect();
    assert!(!other_data.is_empty());
    for p in other_data {
        assert!(!store_names.contains(p), "unused data pack {p} survived");
    }
    let text = fx.wk(&["prune"]);
    text.ok();
    assert!(text.stdout.contains("needs the identity"), "{text}");
    assert_restores(&fx, s(&fx.repo), &s2, &d, "after write-key prune");

    // The write key keeps reporting it; the identity repacks it.
    let again = prune_wk(&fx, &[]);
    again.ok();
    let again = again.json();
    assert!(num(&again, "repack_needs_identity") >= 1, "{again:#}");
    assert_eq!(num(&again, "packs_deleted"), 0, "{again:#}");
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    let r = out.json();
    assert!(num(&r, "repacked_packs") >= 1, "{r:#}");
    assert_eq!(num(&r, "repack_needs_identity"), 0, "{r:#}");
    assert!(
        num(&r, "bytes_freed") > 1_400_000,
        "drop.bin was not freed: {r:#}"
    );
    assert_restores(&fx, s(&fx.repo), &s2, &d, "after identity prune");
    assert_prune_has_nothing_to_do(&fx, &[], "third prune");
}

// ---------------------------------------------------------------------------------------------
// 3. Concurrency
// ---------------------------------------------------------------------------------------------

/// A backup holds a lease from before the prune: prune marks the forgotten parent's packs but
/// must leave the marker pending (exit code 3, naming this host and the backup's pid). The
/// backup, which reuses the parent's unchanged files from exactly those packs, completes; its
/// snapshot restores; the next prune puts the reused packs back and sweeps the rest.
fn running_backup_keeps_the_marker_pending(backend: Backend) {
    let fx = Fixture::on(backend);
    let (src, s1) = back_up_reusable_tree(&fx, "src");
    let s1_packs = packs(&fx.store);
    write_big(&src, backend);

    let (bg, _) = start_and_hold_backup(&fx, &src, &[]);
    forget(&fx, &s1);
    let out = prune_id(&fx, &[], &[]);
    out.code_is(3);
    let r = out.json();
    assert_report_shape(&r, false);
    let marker = r["marker"].as_str().expect("a marker").to_string();
    let pending = r["markers_pending"].as_array().expect("array");
    assert!(
        pending.iter().any(|p| p["marker"] == marker.as_str()),
        "{r:#}"
    );
    for p in pending {
        let why = p["reason"].as_str().expect("reason");
        assert!(
            why.contains(&host()) && why.contains(&bg.pid().to_string()),
            "the reason should name host {} and pid {}: {why}",
            host(),
            bg.pid()
        );
    }
    assert_eq!(num(&r, "packs_deleted"), 0, "{r:#}");
    for p in s1_packs.keys() {
        assert!(fx.store.exists(p), "{p} deleted while a backup may use it");
    }
    let condemned: BTreeSet<String> = markers(&fx, &fx.store)
        .iter()
        .flat_map(|(_, m)| m.packs.iter().map(|p| p.id.to_hex()))
        .collect();
    assert!(
        s1_packs
            .keys()
            .all(|p| condemned.contains(p.rsplit('/').next().unwrap())),
        "the forgotten snapshot's packs should all be condemned"
    );
    // The text report says so too.
    let text = fx.id(&["prune"]);
    text.code_is(3);
    assert!(
        text.stdout.contains("pending") && text.stdout.contains(&bg.pid().to_string()),
        "{text}"
    );

    bg.cont();
    let b = bg.finish();
    b.ok();
    let b = b.json();
    assert_eq!(
        num(&b, "files_read"),
        1,
        "only the big file is new; the rest comes from the parent: {b:#}"
    );
    let s2 = Fixture::snap_id(&b);
    assert_restores(&fx, s(&fx.repo), &s2, &src, "before the sweep");

    let r = prune_sweeps(&fx);
    assert!(num(&r, "packs_rescued") >= 1, "the reused data pack: {r:#}");
    assert!(fx.object_names("gc").is_empty());
    assert!(fx.object_names("locks").is_empty());
    assert_restores(&fx, s(&fx.repo), &s2, &src, "after the sweep");
    assert_prune_has_nothing_to_do(&fx, &[], "last prune");
}
backend_tests!(running_backup_keeps_the_marker_pending);

/// A prune marks while a backup on another host runs (a foreign lease from before the
/// marker): exit 3 naming that host. Backups that start now never reuse the condemned packs:
/// one stores everything again; another, held mid-run, has seen the marker and so does not
/// block its sweep. Every snapshot restores before and after the condemned packs are gone.
fn backup_started_after_a_marker_never_reuses_condemned_packs(backend: Backend) {
    let fx = Fixture::on(backend);
    let (src, s1) = back_up_reusable_tree(&fx, "src");
    let s1_packs = packs(&fx.store);
    forget(&fx, &s1);
    let foreign = "locks/0123456789abcdef0123456789abcdef";
    put_lease(
        &fx,
        &fx.store,
        foreign,
        &lease(
            LeaseKind::Writer,
            "backup-host.example",
            4242,
            0,
            Some(vec![]),
        ),
    );
    let out = prune_id(&fx, &[], &[]);
    out.code_is(3);
    let r = out.json();
    let marker = r["marker"].as_str().expect("a marker").to_string();
    let why = r["markers_pending"][0]["reason"].as_str().expect("reason");
    assert!(
        why.contains("backup-host.example") && why.contains("4242"),
        "{r:#}"
    );
    for p in s1_packs.keys() {
        assert!(fx.store.exists(p));
    }

    // A backup of the same files now stores them again.
    let r1 = fx.backup(&[&src]);
    assert!(
        num(&r1, "blobs_added") >= 20,
        "a backup reused blobs of condemned packs: {r1:#}"
    );
    let snap1 = Fixture::snap_id(&r1);

    // A backup held after loading the index has seen the marker.
    let src2 = fx.path("src2");
    write_reusable_tree(&src2);
    write_big(&src2, backend);
    let (bg, rec) = start_and_hold_backup(&fx, &src2, &[]);
    assert!(
        rec.seen_markers
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m.to_hex() == marker)),
        "the lease does not record marker {marker}: {rec:?}"
    );
    fx.store.delete(foreign);
    let out = prune_id(&fx, &[], &[]);
    assert!(out.code == 0 || out.code == 3, "{out}");
    let r = out.json();
    assert!(
        r["markers_swept"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == marker.as_str()),
        "a backup that has seen the marker blocked its sweep: {r:#}"
    );
    for p in r["markers_pending"].as_array().unwrap() {
        assert_ne!(p["marker"], marker.as_str(), "{r:#}");
        assert!(p["reason"]
            .as_str()
            .unwrap()
            .contains(&bg.pid().to_string()));
    }
    for p in s1_packs.keys() {
        assert!(!fx.store.exists(p), "condemned pack {p} was not deleted");
    }
    assert_restores(&fx, s(&fx.repo), &snap1, &src, "condemned packs deleted");

    bg.cont();
    let b = bg.finish();
    b.ok();
    let snap2 = Fixture::snap_id(&b.json());
    prune_sweeps(&fx);
    assert_restores(&fx, s(&fx.repo), &snap1, &src, "end");
    assert_restores(&fx, s(&fx.repo), &snap2, &src2, "end");
    assert_prune_has_nothing_to_do(&fx, &[], "last prune");
}
backend_tests!(backup_started_after_a_marker_never_reuses_condemned_packs);

/// A backup is paused (SIGSTOP: a VM freeze, a stalled NFS mount) longer than the lease
/// expiry after loading the index. Prune then rightly treats its lease as abandoned and
/// deletes the forgotten parent's packs. When the backup resumes, SPEC §11 says it must not
/// commit ("has let its lease expire (it then refuses to commit)"): either it fails and writes
/// no snapshot, or whatever snapshot it writes must restore.
fn backup_paused_past_its_lease_expiry_must_not_commit(backend: Backend) {
    let fx = Fixture::on(backend);
    let expiry: &[(&str, &OsStr)] = &[("CAIRN_LEASE_EXPIRY", OsStr::new("4"))];
    let (src, s1) = back_up_reusable_tree(&fx, "src");
    write_big(&src, backend);
    let (bg, _) = start_and_hold_backup(&fx, &src, expiry);
    forget(&fx, &s1);
    std::thread::sleep(Duration::from_secs(6));
    let out = prune_id(&fx, &[], expiry);
    out.ok();
    let r = out.json();
    assert!(
        num(&r, "packs_deleted") >= 1,
        "an expired lease should not block the sweep: {r:#}"
    );
    bg.cont();
    let b = bg.finish();
    let snaps = fx.object_names("snapshots");
    if b.code == 0 {
        let s2 = Fixture::snap_id(&b.json());
        assert_restores(
            &fx,
            s(&fx.repo),
            &s2,
            &src,
            "BUG: a backup whose lease expired while it was paused committed a snapshot \
             referencing packs prune deleted meanwhile (Lease::ensure_fresh only looks at the \
             last renewal, which the renewer thread redoes right after the pause)",
        );
    } else {
        b.stderr_has(&["lease"]);
        assert!(
            snaps.is_empty(),
            "a failed backup left snapshot(s) {snaps:?}"
        );
    }
}
backend_tests!(backup_paused_past_its_lease_expiry_must_not_commit);

/// Leases that are not a live backup of this run: an expired lease of another host is removed
/// and blocks nothing; an unreadable one blocks (exit 3, saying so) until removed; a live
/// prune lease of another host makes prune refuse (naming it), an expired or unreadable one is
/// taken over; the lease of a killed prune on this host is taken over at once.
#[test]
fn foreign_expired_and_unreadable_leases() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_reusable_tree(&src);
    let mut round = 0u64;
    let mut forget_new = |fx: &Fixture| {
        round += 1;
        let d = fx.path(&format!("gone{round}"));
        write_file(&d.join("x.bin"), &random_bytes(9000 + round, 100_000));
        forget(fx, &Fixture::snap_id(&fx.backup(&[&d])));
    };

    // Expired writer lease of another host.
    forget_new(&fx);
    let stale = "locks/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    put_lease(
        &fx,
        &fx.store,
        stale,
        &lease(LeaseKind::Writer, "gone-host.example", 77, 7200, None),
    );
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    assert!(num(&out.json(), "packs_deleted") >= 2, "{out}");
    assert!(!fx.store.exists(stale), "an expired lease was kept");

    // Unreadable lease.
    forget_new(&fx);
    let junk = "locks/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    fx.store.write(junk, b"not an age file");
    let out = prune_id(&fx, &[], &[]);
    out.code_is(3);
    let r = out.json();
    assert_eq!(num(&r, "packs_deleted"), 0, "{r:#}");
    let why = r["markers_pending"][0]["reason"].as_str().expect("reason");
    assert!(
        why.contains(junk) && why.contains("cannot be read"),
        "{why}"
    );
    fx.store.delete(junk);
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    assert!(num(&out.json(), "packs_deleted") >= 2, "{out}");

    // A live prune lease of another host: refuse, name it; a dry run still works.
    forget_new(&fx);
    put_lease(
        &fx,
        &fx.store,
        "locks/prune",
        &lease(LeaseKind::Prune, "pruner.example", 99, 0, None),
    );
    let before = fx.store.contents();
    let out = prune_id(&fx, &[], &[]);
    out.code_is(1);
    out.stderr_has(&["another prune", "pruner.example", "99"]);
    assert!(
        fx.store.contents() == before,
        "a refused prune changed something"
    );
    prune_id(&fx, &["--dry-run"], &[]).ok();
    // Dated ten years ahead (planted, or a clock far off): it would never expire, and the
    // refusal says so and what to do, instead of "wait for it to expire".
    put_lease(
        &fx,
        &fx.store,
        "locks/prune",
        &lease(LeaseKind::Prune, "pruner.example", 99, -315_360_000, None),
    );
    let out = prune_id(&fx, &[], &[]);
    out.code_is(1);
    out.stderr_has(&["in the future", "pruner.example", "delete locks/prune"]);
    // Expired (with a short expiry): taken over, and released afterwards.
    put_lease(
        &fx,
        &fx.store,
        "locks/prune",
        &lease(LeaseKind::Prune, "pruner.example", 99, 30, None),
    );
    let short: &[(&str, &OsStr)] = &[("CAIRN_LEASE_EXPIRY", OsStr::new("10"))];
    let out = prune_id(&fx, &[], short);
    out.ok();
    assert!(num(&out.json(), "packs_deleted") >= 2, "{out}");
    assert!(!fx.store.exists("locks/prune"));
    // Unreadable: taken over.
    forget_new(&fx);
    fx.store.write("locks/prune", b"garbage");
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    assert!(num(&out.json(), "packs_deleted") >= 2, "{out}");
    // Left by a prune of this host whose process is gone: taken over at once, although it
    // was renewed a moment ago and the default expiry is an hour.
    forget_new(&fx);
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    put_lease(
        &fx,
        &fx.store,
        "locks/prune",
        &lease(LeaseKind::Prune, &host(), dead_pid, 0, None),
    );
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    assert!(num(&out.json(), "packs_deleted") >= 2, "{out}");
    // ... but not one of a live process of this host.
    forget_new(&fx);
    let mut live = Command::new("sleep").arg("30").spawn().unwrap();
    put_lease(
        &fx,
        &fx.store,
        "locks/prune",
        &lease(LeaseKind::Prune, &host(), live.id(), 0, None),
    );
    let out = prune_id(&fx, &[], &[]);
    let _ = live.kill();
    let _ = live.wait();
    out.code_is(1);
    out.stderr_has(&["another prune"]);
    fx.store.delete("locks/prune");

    // A writer lease of a process of this host that is gone blocks nothing either.
    forget_new(&fx);
    let dead_writer = "locks/cccccccccccccccccccccccccccccccc";
    put_lease(
        &fx,
        &fx.store,
        dead_writer,
        &lease(LeaseKind::Writer, &host(), dead_pid, 0, Some(vec![])),
    );
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    assert!(!fx.store.exists(dead_writer));
    assert_prune_has_nothing_to_do(&fx, &[], "end");
}

/// Two prunes at once: exactly one runs at a time; the other refuses (exit 1) or, if the
/// first was already done, runs; in every case the repository ends up clean and restorable.
#[test]
fn two_prunes_at_once_never_both_run() {
    let fx = Fixture::new();
    let versions = TREE.back_up(&fx, 0, 4);
    for (snap, _) in &versions[..2] {
        forget(&fx, snap);
    }
    let fenv = fx.env();
    let env = env_refs(&fenv);
    let args = ["-r", s(&fx.repo), "-i", s(&fx.identity), "--json", "prune"];
    let a = spawn_cairn(&args, &env);
    let b = spawn_cairn(&args, &env);
    let (a, b) = (a.finish(), b.finish());
    for o in [&a, &b] {
        assert!(o.code == 0 || o.code == 1, "{o}");
        if o.code == 1 {
            o.stderr_has(&["prune"]);
        }
    }
    assert!(a.code == 0 || b.code == 0, "neither prune ran\n{a}\n{b}");
    assert_prune_has_nothing_to_do(&fx, &[], "after two prunes");
    for (snap, src) in &versions[2..] {
        assert_restores(&fx, s(&fx.repo), snap, src, "after two prunes");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Crashes
// ---------------------------------------------------------------------------------------------

/// How a run is ended.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// SIGKILL on entering the n-th call of a syscall of class `MUTATIONS[class]` in any one
    /// thread (strace).
    AtSyscall { class: usize, n: u32 },
    /// SIGKILL after this long.
    After(Duration),
}

/// Run cairn with `args`, killed as `kill` says. Returns None if it was killed, its output
/// if it finished first.
fn run_killed(args: &[&str], env: &[(&str, &OsStr)], kill: Kill) -> Option<Output> {
    match kill {
        Kill::AtSyscall { class, n } => run_killed_at_syscall(args, env, class, n),
        Kill::After(d) => {
            let mut bg = spawn_cairn(args, env);
            let start = Instant::now();
            while start.elapsed() < d {
                if bg.exited() {
                    return Some(bg.finish());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            if bg.exited() {
                return Some(bg.finish());
            }
            bg.kill9();
            None
        }
    }
}

/// Every kill point to try: with strace, the n-th call of each class until a run finishes
/// (`run` returns true when it was killed); then `timed` kills spread over `took`.
fn for_each_kill_point(took: Duration, timed: u32, mut run: impl FnMut(Kill) -> bool) -> usize {
    let mut killed = 0;
    if strace_works() {
        for class in 0..MUTATIONS.len() {
            for n in 1..=60 {
                if run(Kill::AtSyscall { class, n }) {
                    killed += 1;
                } else {
                    break;
                }
            }
        }
    }
    for i in 0..timed {
        if run(Kill::After(took * i / timed)) {
            killed += 1;
        }
    }
    killed
}

/// Run cairn with `args(w)` on a fresh copy `w` of local repository `template`, killed at
/// every kill point of [`for_each_kill_point`] (a run that finishes first must succeed);
/// after each kill, `check(w)` lists what is wrong. Returns how often cairn was killed and
/// the problems per kill point.
fn kill_in_copies(
    fx: &Fixture,
    template: &Path,
    took: Duration,
    timed: u32,
    args: impl Fn(&Path) -> Vec<String>,
    mut check: impl FnMut(&Path) -> Vec<String>,
) -> (usize, Vec<(String, Vec<String>)>) {
    let mut problems = Vec::new();
    let mut i = 0;
    let killed = for_each_kill_point(took, timed, |kill| {
        i += 1;
        let w = fx.path(&format!("w{i}"));
        copy_dir(template, &w);
        let a = args(&w);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let killed = match run_killed(&a, &[], kill) {
            None => {
                problems.push((format!("{kill:?}"), check(&w)));
                true
            }
            Some(out) => {
                assert_eq!(out.code, 0, "{kill:?}: {out}");
                false
            }
        };
        fs::remove_dir_all(&w).ok();
        killed
    });
    (killed, problems)
}

/// `cp -a`.
fn copy_dir(from: &Path, to: &Path) {
    sh("cp", &["-a", s(from), s(to)]);
}

/// After a crash in repository `repo`: the next prune completes (taking over the dead
/// process's lease at once) and leaves nothing to do, no marker and no lease; every snapshot
/// in `kept` restores byte for byte; a new backup works and restores. Returns the problems.
fn recovery_problems(
    fx: &Fixture,
    repo: &Path,
    kept: &[(String, PathBuf)],
    before_prune: Option<&Path>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let r = s(repo);
    let idr = |args: &[&str]| {
        let mut a = vec!["-r", r, "-i", s(&fx.identity), "--json"];
        a.extend_from_slice(args);
        fx.run(&a)
    };
    let mut kept = kept.to_vec();
    // A backup into whatever the crash left (markers, half-rewritten index, deleted packs),
    // of data whose packs may be condemned: it must not rely on them.
    if let Some(dir) = before_prune {
        let out = fx.run(&["-r", r, "-k", s(&fx.write_key), "--json", "backup", s(dir)]);
        if out.code != 0 {
            problems.push(format!(
                "a backup before the recovering prune failed: {}",
                out.stderr.trim()
            ));
        } else {
            kept.push((Fixture::snap_id(&out.json()), dir.to_path_buf()));
        }
    }
    let first = idr(&["prune"]);
    if first.code != 0 {
        problems.push(format!(
            "the prune after the crash failed: {}",
            first.stderr.trim()
        ));
    }
    let d = idr(&["prune", "--dry-run"]).json();
    let left = |d: &Value| {
        ["unused_packs", "unindexed_packs", "repacked_packs"]
            .iter()
            .map(|k| num(d, k))
            .sum::<u64>()
    };
    if left(&d) > 0 {
        // Would more prunes converge?
        let mut runs = 1;
        while runs < 4 && left(&idr(&["prune", "--dry-run"]).json()) > 0 {
            idr(&["prune"]);
            runs += 1;
        }
        let converged = left(&idr(&["prune", "--dry-run"]).json()) == 0;
        problems.push(format!(
            "one prune after the crash did not finish the job (it reported unused {}, \
             unindexed {}, repacked {}, rescued {}; a dry run then still wanted unused {}, \
             repacked {}); {}",
            num(&first.json(), "unused_packs"),
            num(&first.json(), "unindexed_packs"),
            num(&first.json(), "repacked_packs"),
            num(&first.json(), "packs_rescued"),
            num(&d, "unused_packs"),
            num(&d, "repacked_packs"),
            if converged {
                format!("{runs} prunes were needed")
            } else {
                "it does not converge (4 prunes)".to_string()
            }
        ));
    }
    let store = Store::Dir(repo.to_path_buf());
    let gc = store.names("gc");
    if !gc.is_empty() {
        problems.push(format!("markers left: {gc:?}"));
    }
    // (Leases of the dead process: see `prune_removes_the_lease_of_a_killed_backup`.)
    for (snap, src) in &kept {
        problems.extend(restore_problem(fx, r, snap, src));
    }
    // A new backup works.
    let src = fx.path("after-crash");
    if !src.exists() {
        write_file(&src.join("new.bin"), &random_bytes(31337, 150_000));
        write_file(&src.join("same.conf"), b"setting 0 = on\n");
    }
    let out = fx.run(&["-r", r, "-k", s(&fx.write_key), "--json", "backup", s(&src)]);
    if out.code != 0 {
        problems.push(format!(
            "a backup after the crash failed: {}",
            out.stderr.trim()
        ));
    } else {
        problems.extend(restore_problem(fx, r, &Fixture::snap_id(&out.json()), &src));
    }
    problems
}

/// The repository for the prune crash test: five versions, the three oldest forgotten
/// (partly used data packs to repack, unused tree packs), a forgotten snapshot of other data
/// (wholly unused packs) and packs no index lists (a backup whose index was lost).
fn prune_workload(fx: &Fixture) -> Vec<(String, PathBuf)> {
    let versions = TREE.back_up(fx, 0, 5);
    for (snap, _) in &versions[..3] {
        forget(fx, snap);
    }
    let other = fx.path("other");
    write_file(&other.join("x.bin"), &random_bytes(4242, 600_000));
    forget(fx, &Fixture::snap_id(&fx.backup(&[&other])));
    let idx_before: BTreeSet<String> = fx.object_names("index").into_iter().collect();
    let lost = fx.path("lost");
    write_file(&lost.join("y.bin"), &random_bytes(4343, 500_000));
    forget(fx, &Fixture::snap_id(&fx.backup(&[&lost])));
    for n in fx.object_names("index") {
        if !idx_before.contains(&n) {
            fx.store.delete(&n);
        }
    }
    versions[3..].to_vec()
}

/// kill -9 of a prune at every rename, unlink and link it makes (and at timed points): the
/// next prune always finishes the job, and every snapshot restores.
#[test]
fn prune_killed_at_any_point_is_finished_by_the_next() {
    let fx = Fixture::new();
    let kept = prune_workload(&fx);
    // The oldest version, forgotten: its packs are repacked or condemned.
    let forgotten = fx.path("v0");
    let template = fx.path("template");
    copy_dir(&fx.repo, &template);
    let args = |repo: &Path| {
        ["-r", s(repo), "-i", s(&fx.identity), "--json", "prune"]
            .map(String::from)
            .to_vec()
    };

    // What an uninterrupted prune does, and how long it takes.
    let clean = fx.path("clean");
    copy_dir(&template, &clean);
    let t0 = Instant::now();
    let out = cairn(&args(&clean), &[]);
    let took = t0.elapsed();
    out.ok();
    let r = out.json();
    assert!(num(&r, "unused_packs") >= 2, "{r:#}");
    assert!(num(&r, "repacked_packs") >= 1, "{r:#}");
    assert!(num(&r, "unindexed_packs") >= 1, "{r:#}");
    let p = recovery_problems(&fx, &clean, &kept, Some(&forgotten));
    assert!(p.is_empty(), "uninterrupted prune: {p:#?}");

    let (killed, problems) = kill_in_copies(&fx, &template, took, 12, args, |w| {
        recovery_problems(&fx, w, &kept, Some(&forgotten))
    });
    if strace_works() {
        assert!(killed >= 10, "only {killed} kill points");
    }
    assert_no_kill_problems("prune", killed, problems);
}

/// kill -9 of a backup at every rename, unlink and link (and at timed points): prune (with
/// the write key, at once: the dead process's lease is abandoned) removes every pack it left,
/// and everything live still restores.
#[test]
fn backup_killed_at_any_point_is_cleaned_up_by_prune() {
    let fx = Fixture::new();
    let (base, s0) = back_up_reusable_tree(&fx, "base");
    // The backup to kill: new data over several packs (16 MiB each) plus the old files.
    let src = fx.path("src");
    write_reusable_tree(&src);
    write_file(&src.join("new1.bin"), &random_bytes(1, 20 * MB));
    write_file(&src.join("new2.bin"), &random_bytes(2, 20 * MB));
    let template = fx.path("template");
    copy_dir(&fx.repo, &template);
    let template_packs = packs(&Store::Dir(template.clone()));

    let t0 = Instant::now();
    fx.backup(&[&src]);
    let took = t0.elapsed();

    let args = |w: &Path| {
        [
            "-r",
            s(w),
            "-k",
            s(&fx.write_key),
            "--json",
            "backup",
            s(&src),
        ]
        .map(String::from)
        .to_vec()
    };
    let (killed, problems) = kill_in_copies(&fx, &template, took, 8, args, |w| {
        let ws = Store::Dir(w.to_path_buf());
        let mut p = Vec::new();
        let new_snaps: Vec<String> = snapshot_ids(&ws).into_iter().filter(|n| *n != s0).collect();
        let out = fx.run(&["-r", s(w), "-k", s(&fx.write_key), "--json", "prune"]);
        if out.code != 0 {
            p.push(format!(
                "prune with the write key failed: {}",
                out.stderr.trim()
            ));
        }
        if new_snaps.is_empty() {
            // No snapshot: every pack the backup wrote is gone again.
            let now = packs(&ws);
            let extra: Vec<&String> = now
                .keys()
                .filter(|n| !template_packs.contains_key(*n))
                .collect();
            let lost: Vec<&String> = template_packs
                .keys()
                .filter(|n| !now.contains_key(*n))
                .collect();
            if !extra.is_empty() || !lost.is_empty() {
                p.push(format!(
                    "after prune: packs left behind {extra:?}, lost {lost:?}"
                ));
            }
        }
        let mut kept = vec![(s0.clone(), base.clone())];
        kept.extend(new_snaps.into_iter().map(|n| (n, src.clone())));
        p.extend(recovery_problems(&fx, w, &kept, None));
        p
    });
    assert_no_kill_problems("backup", killed, problems);
}

/// SPEC §11: "Prune deletes writer leases that are no longer held." A backup killed before
/// it wrote any pack leaves only its lease; the process is gone, so the lease is abandoned and
/// prune must delete it (even though there is nothing else to collect).
#[test]
fn prune_removes_the_lease_of_a_killed_backup() {
    let fx = Fixture::new();
    let (src, _) = back_up_reusable_tree(&fx, "src");
    write_big(&src, Backend::Local);
    let mut bg = fx.spawn_wk(&["backup", s(&src)], &[]);
    let (name, _) = wait_for_loaded_lease(&fx, &fx.store, &mut bg);
    bg.kill9();
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    let r = out.json();
    assert!(
        !fx.store.exists(&name),
        "the lease {name} of a killed backup survives prune (report: {r:#})"
    );
    assert_prune_has_nothing_to_do(&fx, &[], "second prune");
    assert!(
        fx.object_names("locks").is_empty(),
        "{:?}",
        fx.object_names("locks")
    );
}

/// A backup killed while writing a pack leaves a `.tmp-` file (the local backend writes to a
/// temporary name, then renames). Readers ignore such files (SPEC §3), but nothing ever
/// removes them: every crash leaks up to a pack per upload thread. Prune, which removes every
/// other leftover of an interrupted backup, should also remove temporary files older than the
/// lease expiry.
#[test]
fn prune_removes_temporary_files_left_by_killed_backups() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("a.bin"), &random_bytes(1, 40 * MB));
    let mut leftovers = Vec::new();
    for attempt in 0..10 {
        let mut bg = fx.spawn_wk(&["backup", s(&src)], &[]);
        let start = Instant::now();
        while temporary_files(&fx.repo.join("data")).is_empty()
            && !bg.exited()
            && start.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        bg.kill9();
        leftovers = temporary_files(&fx.repo);
        if !leftovers.is_empty() {
            break;
        }
        eprintln!("attempt {attempt}: the kill left no temporary file; again");
    }
    assert!(!leftovers.is_empty(), "could not kill a backup mid-pack");
    let leaked: u64 = leftovers
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    std::thread::sleep(Duration::from_secs(3));
    let out = prune_id(&fx, &[], &[("CAIRN_LEASE_EXPIRY", OsStr::new("2"))]);
    out.ok();
    let still: Vec<PathBuf> = leftovers.into_iter().filter(|p| p.exists()).collect();
    assert!(
        still.is_empty(),
        "temporary files of a backup killed long ago survive prune ({leaked} bytes): {still:?}"
    );
}

/// Back up directory `d` holding `keep.conf` (4,000 random bytes from `seed`, one blob) and
/// `drop.bin` (2 MiB): both land in one data pack. Returns the directory, keep.conf's bytes
/// and the snapshot.
fn keep_and_drop(fx: &Fixture, seed: u64) -> (PathBuf, Vec<u8>, String) {
    let d = fx.path("d");
    let keep = random_bytes(seed, 4000);
    write_file(&d.join("keep.conf"), &keep);
    write_file(&d.join("drop.bin"), &random_bytes(seed + 1, 2 * MB));
    let snap = Fixture::snap_id(&fx.backup(&[&d]));
    (d, keep, snap)
}

/// A live blob stored in two packs (what a prune killed after its repack leaves, or two
/// backups storing the same new file at once): the first pack also holds dead data, so it is
/// repacked; the second, wholly used, is kept. The repack writes the live blob again, so that
/// one prune frees the unused bytes and the next has nothing to do.
#[test]
fn prune_converges_when_a_live_blob_is_stored_in_two_packs() {
    let fx = Fixture::new();
    let (d, keep, s1) = keep_and_drop(&fx, 11);
    let data: Vec<String> = fx.object_names("data");
    assert_eq!(data.len(), 1, "{data:?}");
    let first = data[0].rsplit('/').next().unwrap().to_string();

    // A second pack holding keep.conf's blob, indexed, whose id sorts after the first.
    let crafter = Crafter::new(&fx);
    let dup = loop {
        let p = crafter.put_pack(PackKind::Data, std::slice::from_ref(&keep));
        if p.id.to_hex() > first {
            break p;
        }
        let h = p.id.to_hex();
        fx.store.delete(&format!("data/{}/{h}", &h[..2]));
    };
    crafter.put_meta(
        "index",
        &IndexRecord {
            packs: vec![dup.clone()],
        }
        .encode(),
    );

    fs::remove_file(d.join("drop.bin")).unwrap();
    let s2 = Fixture::snap_id(&fx.backup(&[&d]));
    forget(&fx, &s1);

    let out = prune_id(&fx, &[], &[]);
    out.ok();
    let r1 = out.json();
    let data_bytes: u64 = fx.store.list("data").iter().map(|(_, n)| n).sum();
    let out2 = prune_id(&fx, &["--dry-run"], &[]);
    out2.ok();
    let r2 = out2.json();
    assert_restores(&fx, s(&fx.repo), &s2, &d, "after prune");
    assert!(
        data_bytes < MB as u64,
        "drop.bin's 2 MiB were not freed ({data_bytes} bytes of data packs left); prune said\n{r1:#}"
    );
    assert_eq!(
        (num(&r2, "unused_packs"), num(&r2, "repacked_packs")),
        (0, 0),
        "prune does not converge: after one prune ({r1:#}) a dry run still wants to do {r2:#}"
    );
}

/// A write-key holder plants an index object claiming that every blob of the honest backups
/// lives in a junk pack of its own, whose id sorts first (the location an index lookup finds
/// first). prune must keep the packs that really hold the data: a claim adds a place a blob
/// may be, it never takes one away. Deleting the planted object then restores everything.
#[test]
fn a_planted_index_claim_never_empties_the_packs_that_hold_the_data() {
    let fx = Fixture::new();
    let (d, files, snap) = fx.back_up_small_files(40);
    let honest: Vec<String> = fx.object_names("data");

    let crafter = Crafter::new(&fx);
    let junk = crafter.junk_pack_below(99, &fx.lowest_name("data"));
    let planted = crafter.plant_claim(junk, &files);

    prune_id(&fx, &[], &[]).ok();
    for name in &honest {
        assert!(
            fx.object_names("data").contains(name),
            "prune deleted {name}, which holds the honest data, on the planted claim"
        );
    }
    fx.store.delete(&format!("index/{planted}"));
    assert_restores(
        &fx,
        s(&fx.repo),
        &snap,
        &d,
        "after prune and removing the planted index",
    );
}

/// A planted claim that a live blob of a pack being repacked is stored elsewhere: the repack
/// writes the blob again anyway (the claim is unverified), so deleting the repacked pack loses
/// nothing. Before, the repack skipped the blob and the only real copy went with the pack.
#[test]
fn a_planted_claim_does_not_stop_a_repack_from_rewriting_the_blob() {
    let fx = Fixture::new();
    let (d, keep, s1) = keep_and_drop(&fx, 51);
    assert_eq!(fx.object_names("data").len(), 1);
    fs::remove_file(d.join("drop.bin")).unwrap();
    let s2 = Fixture::snap_id(&fx.backup(&[&d]));
    forget(&fx, &s1);

    let crafter = Crafter::new(&fx);
    let junk = crafter.put_pack(PackKind::Data, &[random_bytes(53, 64)]);
    crafter.plant_claim(junk, std::slice::from_ref(&keep));

    let out = prune_id(&fx, &[], &[]);
    out.ok();
    assert!(
        num(&out.json(), "repacked_packs") >= 1,
        "the pack holding keep.conf and drop.bin was not repacked: {out}"
    );
    // prune carries the claim into the index objects it rewrites: the index is rebuilt from
    // the packs' own trailers, as the README says to do.
    fx.id(&["repair", "index"]).ok();
    assert_restores(
        &fx,
        s(&fx.repo),
        &s2,
        &d,
        "after a repack beside a planted claim",
    );
}

/// A killed backup's half-written pack (`data/.tmp-staged-…`) goes with the next prune once it
/// is two minutes old when no other backup holds a lease, and only after a lease's life while
/// one does (it may be that backup's).
#[test]
fn killed_backups_temporary_files_go_when_no_backup_runs() {
    let fx = Fixture::new();
    let (src, _) = back_up_reusable_tree(&fx, "src");
    let plant = |name: &str, age: Duration| {
        let path = fx.repo.join("data").join(name);
        write_file(&path, &random_bytes(5, 4096));
        let f = fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::now() - age).unwrap();
        path
    };
    let old = plant(".tmp-staged-00000000000000aa", Duration::from_secs(300));
    let fresh = plant(".tmp-staged-00000000000000bb", Duration::ZERO);

    // A running backup holds its lease: the five-minute-old file may be its own.
    write_big(&src, Backend::Local);
    let (bg, _) = start_and_hold_backup(&fx, &src, &[]);
    let out = prune_id(&fx, &[], &[]);
    assert_eq!(out.json()["incomplete_removed"], 0, "{out}");
    assert!(old.exists() && fresh.exists());
    bg.cont();
    bg.finish().ok();

    // None runs: the old one goes, the fresh one stays (another host's clock may differ).
    let out = prune_id(&fx, &[], &[]);
    out.ok();
    assert_eq!(out.json()["incomplete_removed"], 1, "{out}");
    assert!(!old.exists() && fresh.exists());
}
