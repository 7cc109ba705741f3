//! `cairn init --like` and `cairn copy` end to end (SPEC.md §11 "Copy"): every snapshot
//! arrives as the same ciphertext and restores byte for byte from the copy; a second copy sends
//! nothing; a write key suffices; a repository not made with `--like` is refused clearly; an
//! interrupted copy (kill -9 at every rename, and after some packs) resumes, adopting what was
//! sent; one snapshot can be copied alone; a damaged source pack is named and no snapshot is
//! written; at the destination, copy is a writer: a pending prune's condemned packs are
//! refused, a prune running meanwhile keeps what the copy sends, and a copy paused past its
//! lease expiry must not commit.

use cairn_e2e::background::*;
use cairn_e2e::repo_objects::*;
use cairn_e2e::s3::{Fault, FaultProxy};
use cairn_e2e::versions::*;
use cairn_e2e::*;
use cairn_format::gc::{LeaseKind, LeaseRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The source trees backed up here (see [`Versions`]).
const TREE: Versions = Versions {
    changing: 4,
    unique: 150_000,
    notes: 30_000,
    configs: 1,
};

/// Run cairn with the fixture's write key (`-k`) or identity (`-i`) on repository `repo`.
fn on(fx: &Fixture, repo: &str, identity: bool, args: &[&str]) -> Output {
    let (flag, key) = if identity {
        ("-i", &fx.identity)
    } else {
        ("-k", &fx.write_key)
    };
    let mut a = vec!["-r", repo, flag, s(key)];
    a.extend_from_slice(args);
    fx.run(&a)
}

/// `cairn init --like SRC` at `dst`.
fn init_like(fx: &Fixture, dst: &Store, identity: bool) -> Output {
    on(
        fx,
        &dst.location(),
        identity,
        &["init", "--like", s(&fx.repo), "--allow-host-retention"],
    )
}

/// `cairn --json copy --to DST [snapshots]` from the fixture's repository.
fn copy(fx: &Fixture, dst: &Store, identity: bool, snaps: &[&str]) -> Output {
    let loc = dst.location();
    let mut a = vec!["--json", "copy", "--to", &loc];
    a.extend_from_slice(snaps);
    on(fx, s(&fx.repo), identity, &a)
}

// ---------------------------------------------------------------------------------------------
// Background processes and kills
// ---------------------------------------------------------------------------------------------

/// `cairn --json copy --to DST` from the fixture's repository with the write key, in the
/// background.
fn spawn_copy(fx: &Fixture, dst: &Store, extra_env: &[(&str, &OsStr)]) -> Bg {
    fx.spawn_wk(&["--json", "copy", "--to", &dst.location()], extra_env)
}

/// Wait until the copy's lease at `dst` records the markers it has seen (it has loaded the
/// destination index), then SIGSTOP it.
fn hold_after_lease(fx: &Fixture, dst: &Store, bg: &mut Bg) -> LeaseRecord {
    let (_, rec) = wait_for_loaded_lease(fx, dst, bg);
    bg.stop();
    assert!(
        snapshot_ids(dst).is_empty() || !bg.exited(),
        "the copy finished before it could be held"
    );
    rec
}

/// How a copy is ended.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// SIGKILL on entering the n-th call of a `MUTATIONS[class]` syscall in one thread.
    AtSyscall { class: usize, n: u32 },
    /// SIGKILL as soon as the destination holds this many packs.
    AfterPacks(usize),
}

/// Run `cairn --json copy` from the fixture's repository to local `dst`, killed as `kill`
/// says. Returns None if it was killed, its output if it finished first.
fn copy_killed(fx: &Fixture, dst: &Path, kill: Kill) -> Option<Output> {
    let args = fx.wk_args(&["--json", "copy", "--to", s(dst)]);
    match kill {
        Kill::AtSyscall { class, n } => run_killed_at_syscall(&args, &[], class, n),
        Kill::AfterPacks(k) => {
            let mut bg = spawn_cairn(&args, &[]);
            let store = Store::Dir(dst.to_path_buf());
            loop {
                if bg.exited() {
                    return Some(bg.finish());
                }
                if store.list("data").len() + store.list("tree").len() >= k {
                    bg.kill9();
                    return None;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// `init --like` with a write key makes a repository with the same config and keys; `copy`
/// with a write key sends every snapshot as the same bytes (packs and snapshot objects), and
/// each restores byte for byte from the copy; a second copy sends nothing; a new snapshot is
/// sent incrementally (blobs the copy has are not sent again); the copy can be pruned and
/// still restores.
fn copy_sends_everything_once_and_the_copy_restores(backend: Backend) {
    let fx = Fixture::on(backend);
    let versions = TREE.back_up(&fx, 0, 3);
    let dst = fx.fresh_store("dst");
    let dloc = dst.location();
    init_like(&fx, &dst, false).ok();
    assert_eq!(
        dst.read("config"),
        fx.store.read("config"),
        "config differs"
    );
    let keys: Vec<String> = fx.store.names("keys");
    assert!(!keys.is_empty());
    assert_eq!(dst.names("keys"), keys);
    for k in &keys {
        assert_eq!(dst.read(k), fx.store.read(k), "{k} differs");
    }
    // A second init --like is refused and changes nothing.
    let before = dst.contents();
    init_like(&fx, &dst, false).failed();
    assert!(
        dst.contents() == before,
        "a refused init --like changed the destination"
    );

    let src_packs = packs(&fx.store);
    let out = copy(&fx, &dst, false, &[]);
    out.ok();
    let r = out.json();
    let all: BTreeSet<String> = versions.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(strs(&r, "snapshots_copied"), all, "{r:#}");
    assert!(strs(&r, "snapshots_present").is_empty(), "{r:#}");
    assert_eq!(num(&r, "packs_copied"), src_packs.len() as u64, "{r:#}");
    assert_eq!(
        num(&r, "bytes_copied"),
        src_packs.values().sum::<u64>(),
        "{r:#}"
    );
    assert_eq!(num(&r, "packs_adopted"), 0, "{r:#}");
    assert_eq!(num(&r, "blobs_present"), 0, "{r:#}");
    assert_eq!(
        packs(&dst),
        src_packs,
        "the copy's packs differ from the source's"
    );
    for id in &all {
        let name = format!("snapshots/{id}");
        assert_eq!(dst.read(&name), fx.store.read(&name), "{name} differs");
    }
    assert!(
        unreleased_leases(&dst).is_empty(),
        "{:?}",
        dst.names("locks")
    );
    for (snap, src) in &versions {
        assert_restores(&fx, &dloc, snap, src, "from the copy");
    }
    // The copy lists the same snapshots.
    let listed = on(&fx, &dloc, false, &["--json", "snapshots"]);
    listed.ok();
    assert_eq!(listed.json().as_array().map(Vec::len), Some(3), "{listed}");

    // Again (with the identity and --from): nothing to send.
    let out = fx.run(&[
        "-i",
        s(&fx.identity),
        "--json",
        "copy",
        "--from",
        s(&fx.repo),
        "--to",
        &dloc,
    ]);
    out.ok();
    let r = out.json();
    assert!(strs(&r, "snapshots_copied").is_empty(), "{r:#}");
    assert_eq!(strs(&r, "snapshots_present"), all, "{r:#}");
    assert_eq!(num(&r, "packs_copied"), 0, "{r:#}");
    assert_eq!(num(&r, "bytes_copied"), 0, "{r:#}");
    assert_eq!(packs(&dst), src_packs);

    // A new version: only its new packs travel.
    let (v3, v3src) = TREE.back_up(&fx, 3, 1).remove(0);
    let new_packs: BTreeMap<String, u64> = packs(&fx.store)
        .into_iter()
        .filter(|(n, _)| !src_packs.contains_key(n))
        .collect();
    let out = copy(&fx, &dst, false, &[]);
    out.ok();
    let r = out.json();
    assert_eq!(strs(&r, "snapshots_copied"), BTreeSet::from([v3.clone()]));
    assert_eq!(num(&r, "packs_copied"), new_packs.len() as u64, "{r:#}");
    assert_eq!(
        num(&r, "bytes_copied"),
        new_packs.values().sum::<u64>(),
        "{r:#}"
    );
    assert!(num(&r, "blobs_present") > 0, "{r:#}");
    assert_restores(&fx, &dloc, &v3, &v3src, "incremental copy");

    // The copy is a repository of its own: forget and prune there, the rest still restores.
    dst.delete(&format!("snapshots/{}", versions[0].0));
    let out = on(&fx, &dloc, true, &["--json", "prune"]);
    out.ok();
    assert!(num(&out.json(), "packs_deleted") >= 1, "{out}");
    for (snap, src) in versions[1..].iter().chain([(v3, v3src)].iter()) {
        assert_restores(&fx, &dloc, snap, src, "after pruning the copy");
    }
    // The source is untouched by all this.
    assert_eq!(snapshot_ids(&fx.store).len(), 4);
}
backend_tests!(copy_sends_everything_once_and_the_copy_restores);

/// A repository made with its own `init` (same recipient, other keys) is refused with a
/// message that says how to make one; so is a location with no repository; nothing is
/// written to either.
#[test]
fn copy_to_a_repository_not_made_like_the_source_is_refused() {
    let fx = Fixture::new();
    let versions = TREE.back_up(&fx, 0, 1);
    let other = fx.fresh_store("other");
    let oloc = other.location();
    fx.run(&["-r", &oloc, "init", "--recipient", &fx.recipient])
        .ok();
    let before = other.contents();
    let out = copy(&fx, &other, true, &[]);
    out.failed().stderr_has(&["init --like"]);
    assert!(other.contents() == before, "a refused copy wrote to {oloc}");
    // With the write key the destination cannot even be opened; it must still fail cleanly.
    let out = copy(&fx, &other, false, &[]);
    out.failed();
    assert!(other.contents() == before, "a refused copy wrote to {oloc}");

    let nowhere = fx.path("nowhere");
    let out = fx.wk(&["copy", "--to", s(&nowhere)]);
    out.failed().stderr_has(&["nowhere"]);
    assert!(
        files_below(&nowhere).is_empty(),
        "copy wrote into a location that is no repository"
    );
    // And the source is fine.
    assert_restores(&fx, s(&fx.repo), &versions[0].0, &versions[0].1, "source");
}

/// Copying named snapshots copies only those (and only the packs they need).
/// Three snapshots of unrelated trees (no shared data): id, source, the packs each wrote.
fn unrelated_snapshots(fx: &Fixture, seed: u64) -> Vec<(String, PathBuf, BTreeSet<String>)> {
    (0..3u64)
        .map(|i| {
            let d = fx.path(&format!("t{i}"));
            write_file(&d.join("data.bin"), &random_bytes(seed + i, 400_000));
            let before = packs(&fx.store);
            let id = Fixture::snap_id(&fx.backup(&[&d]));
            let own = packs(&fx.store)
                .into_keys()
                .filter(|n| !before.contains_key(n))
                .collect();
            (id, d, own)
        })
        .collect()
}

#[test]
fn copy_of_named_snapshots_copies_only_those() {
    let fx = Fixture::new();
    let snaps = unrelated_snapshots(&fx, 100);
    let dst = fx.fresh_store("dst");
    init_like(&fx, &dst, false).ok();
    let prefix = &snaps[1].0[..12];
    let out = copy(&fx, &dst, false, &[prefix]);
    out.ok();
    let r = out.json();
    assert_eq!(
        strs(&r, "snapshots_copied"),
        BTreeSet::from([snaps[1].0.clone()])
    );
    assert_eq!(snapshot_ids(&dst), BTreeSet::from([snaps[1].0.clone()]));
    let got: BTreeSet<String> = packs(&dst).into_keys().collect();
    assert_eq!(got, snaps[1].2, "packs of other snapshots were copied");
    assert_restores(
        &fx,
        &dst.location(),
        &snaps[1].0,
        &snaps[1].1,
        "single snapshot",
    );
    // `latest` is the newest one.
    let out = copy(&fx, &dst, false, &["latest"]);
    out.ok();
    assert_eq!(
        strs(&out.json(), "snapshots_copied"),
        BTreeSet::from([snaps[2].0.clone()])
    );
    assert_eq!(snapshot_ids(&dst).len(), 2);
    // An unknown id is an error and copies nothing.
    let out = copy(&fx, &dst, false, &["ffffffffffff"]);
    out.failed();
    assert_eq!(snapshot_ids(&dst).len(), 2);
}

/// A data pack of the source damaged on disk: copy names the pack and writes no snapshot that
/// needs it (exit 3); once the pack is repaired, copy completes and everything restores.
#[test]
fn copy_of_a_damaged_pack_names_it_and_writes_no_snapshot_that_needs_it() {
    let fx = Fixture::new();
    let mut versions = TREE.back_up(&fx, 0, 1);
    // A pack the first backup wrote holds data of the first snapshot.
    let victim = fx.object_names("data")[0].clone();
    versions.extend(TREE.back_up(&fx, 1, 1));
    let original = fx.store.read(&victim).unwrap();
    fx.store.flip_byte(&victim);
    let dst = fx.fresh_store("dst");
    init_like(&fx, &dst, false).ok();
    let out = copy(&fx, &dst, false, &[]);
    let pack_id = victim.rsplit('/').next().unwrap();
    out.stderr_has(&[&pack_id[..16], &versions[0].0[..8]]);
    assert!(
        !snapshot_ids(&dst).contains(&versions[0].0),
        "a snapshot that needs the damaged pack was copied"
    );
    // Partial (3) when the other snapshot was copied, failed (1) when it needs the pack too.
    out.code_is(if snapshot_ids(&dst).is_empty() { 1 } else { 3 });
    for (snap, src) in &versions {
        if snapshot_ids(&dst).contains(snap) {
            assert_restores(
                &fx,
                &dst.location(),
                snap,
                src,
                "copied beside a damaged pack",
            );
        }
    }
    assert!(!dst.exists(&victim), "the damaged pack was copied");
    assert!(
        unreleased_leases(&dst).is_empty(),
        "{:?}",
        dst.names("locks")
    );

    // A damaged tree pack too.
    let tree = fx.object_names("tree")[0].clone();
    let tree_original = fx.store.read(&tree).unwrap();
    fx.store.flip_byte(&tree);
    let out = copy(&fx, &dst, false, &[]);
    out.failed();
    assert!(snapshot_ids(&dst).is_empty());

    fx.store.write(&victim, &original);
    fx.store.write(&tree, &tree_original);
    let out = copy(&fx, &dst, false, &[]);
    out.ok();
    for (snap, src) in &versions {
        assert_restores(
            &fx,
            &dst.location(),
            snap,
            src,
            "after repairing the source",
        );
    }
}

/// One damaged data pack keeps only the snapshots that need it from the copy: the others are
/// copied and restore, the ones left out are named, and the exit code is 3 (partial).
#[test]
fn copy_with_a_damaged_pack_copies_the_snapshots_that_do_not_need_it() {
    let fx = Fixture::new();
    let snaps = unrelated_snapshots(&fx, 300);
    let victim: Vec<&String> = snaps[1]
        .2
        .iter()
        .filter(|n| n.starts_with("data/"))
        .collect();
    assert_eq!(victim.len(), 1, "{:?}", snaps[1].2);
    let victim = victim[0].clone();
    fx.store.flip_byte(&victim);
    let dst = fx.fresh_store("dst");
    init_like(&fx, &dst, false).ok();
    let out = copy(&fx, &dst, false, &[]);
    out.code_is(3)
        .stderr_has(&[&snaps[1].0[..8], "was not copied"]);
    let r = out.json();
    assert_eq!(
        strs(&r, "snapshots_copied"),
        BTreeSet::from([snaps[0].0.clone(), snaps[2].0.clone()])
    );
    assert_eq!(r["snapshots_failed"][0]["snapshot"], snaps[1].0.as_str());
    assert_eq!(
        snapshot_ids(&dst),
        BTreeSet::from([snaps[0].0.clone(), snaps[2].0.clone()])
    );
    assert!(!dst.exists(&victim), "the damaged pack was copied");
    for i in [0, 2] {
        assert_restores(
            &fx,
            &dst.location(),
            &snaps[i].0,
            &snaps[i].1,
            "partial copy",
        );
    }
}

/// kill -9 of a copy at every rename, unlink and link (strace) and after 1, 2, 3 packs:
/// copying again completes, adopts every pack already at the destination instead of sending it
/// again (so it sends fewer bytes than a full copy), and everything restores from the copy.
#[test]
fn interrupted_copy_resumes_and_adopts_what_was_sent() {
    let fx = Fixture::new();
    let a = fx.path("a");
    write_file(&a.join("big1.bin"), &random_bytes(1, 20 * MB));
    write_file(&a.join("big2.bin"), &random_bytes(2, 20 * MB));
    write_file(&a.join("small.conf"), b"x = 1\n");
    let sa = Fixture::snap_id(&fx.backup(&[&a]));
    let b = fx.path("b");
    write_file(&b.join("more.bin"), &random_bytes(3, 6 * MB));
    let sb = Fixture::snap_id(&fx.backup(&[&b]));
    let src_packs = packs(&fx.store);
    let full: u64 = src_packs.values().sum();
    assert!(src_packs.len() >= 5, "{src_packs:?}");

    let mut kills = Vec::new();
    if strace_works() {
        for class in 0..MUTATIONS.len() {
            for n in 1..=12 {
                kills.push(Kill::AtSyscall { class, n });
            }
        }
    }
    kills.extend([1, 2, 3, 4].map(Kill::AfterPacks));
    let mut problems = Vec::new();
    let mut killed = 0;
    let mut adopted_some = false;
    let mut skip_class = None;
    for (i, kill) in kills.into_iter().enumerate() {
        if let Kill::AtSyscall { class, .. } = kill {
            if skip_class == Some(class) {
                continue;
            }
        }
        let dst = fx.path(&format!("dst{i}"));
        let dstore = Store::Dir(dst.clone());
        init_like(&fx, &dstore, false).ok();
        if let Some(o) = copy_killed(&fx, &dst, kill) {
            // It finished before the kill point: later points of this class are past the end.
            assert_eq!(o.code, 0, "{kill:?}: {o}");
            if let Kill::AtSyscall { class, .. } = kill {
                skip_class = Some(class);
            }
        } else {
            killed += 1;
            let present = packs(&dstore);
            let indexed = !dstore.names("index").is_empty();
            let out = copy(&fx, &dstore, false, &[]);
            let mut p = Vec::new();
            if out.code != 0 {
                p.push(format!(
                    "the copy after the kill failed: {}",
                    out.stderr.trim()
                ));
            } else {
                let r = out.json();
                let present_bytes: u64 = present.values().sum();
                if !indexed {
                    if num(&r, "packs_adopted") != present.len() as u64 {
                        p.push(format!(
                            "{} packs were at the destination, {} adopted",
                            present.len(),
                            num(&r, "packs_adopted")
                        ));
                    }
                    if num(&r, "bytes_copied") != full - present_bytes {
                        p.push(format!(
                            "sent {} bytes, expected {} (full {full} minus {present_bytes} already there)",
                            num(&r, "bytes_copied"),
                            full - present_bytes
                        ));
                    }
                    if !present.is_empty() && num(&r, "packs_adopted") > 0 {
                        adopted_some = true;
                    }
                }
                if packs(&dstore) != src_packs {
                    p.push("the destination's packs differ from the source's".into());
                }
                if snapshot_ids(&dstore) != BTreeSet::from([sa.clone(), sb.clone()]) {
                    p.push(format!(
                        "snapshots at the destination: {:?}",
                        snapshot_ids(&dstore)
                    ));
                }
                let again = copy(&fx, &dstore, false, &[]);
                if again.code != 0 || num(&again.json(), "packs_copied") != 0 {
                    p.push(format!("a third copy was not a no-op: {again}"));
                }
                // Nothing left over for prune, no lease.
                let pr = on(&fx, s(&dst), false, &["--json", "prune", "--dry-run"]);
                let pj = pr.json();
                if num(&pj, "unused_packs") + num(&pj, "unindexed_packs") != 0 {
                    p.push(format!("prune would still collect: {pj:#}"));
                }
                for (snap, src) in [(&sa, &a), (&sb, &b)] {
                    p.extend(restore_problem(&fx, s(&dst), snap, src));
                }
            }
            problems.push((format!("{kill:?}"), p));
        }
        fs::remove_dir_all(&dst).ok();
    }
    assert!(
        adopted_some,
        "no interrupted copy left packs that the next one adopted"
    );
    assert_no_kill_problems("copy", killed, problems);
}

/// At the destination, a pending prune marker condemns the packs of a forgotten copied
/// snapshot: copying that snapshot again must refuse (the packs' names would be swept) and
/// write nothing; once the marker is swept, the copy goes through and restores.
#[test]
fn copy_refuses_packs_a_pending_prune_condemned_at_the_destination() {
    let fx = Fixture::new();
    let versions = TREE.back_up(&fx, 0, 1);
    let (snap, src) = versions[0].clone();
    let dst = fx.fresh_store("dst");
    let dloc = dst.location();
    init_like(&fx, &dst, false).ok();
    copy(&fx, &dst, false, &[]).ok();
    dst.delete(&format!("snapshots/{snap}"));
    let foreign = "locks/0123456789abcdef0123456789abcdef";
    // A backup on another host, running since before the prune.
    let rec = lease(
        LeaseKind::Writer,
        "backup-host.example",
        4242,
        0,
        Some(vec![]),
    );
    put_lease(&fx, &dst, foreign, &rec);
    let out = on(&fx, &dloc, false, &["--json", "prune"]);
    out.code_is(3);
    // Lease objects aside: writers only create, so a refused copy leaves its released lease
    // for the next prune.
    let data = |st: &Store| {
        st.contents()
            .into_iter()
            .filter(|(n, _)| !n.starts_with("locks/"))
            .collect::<Vec<_>>()
    };
    let before = data(&dst);
    let out = copy(&fx, &dst, false, &[]);
    out.failed().stderr_has(&["condemned", "prune"]);
    assert_eq!(unreleased_leases(&dst), vec![foreign.to_string()]);
    let after = data(&dst);
    assert!(
        before == after,
        "a refused copy changed the destination: {:?}",
        after
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !before.iter().any(|(b, _)| b == *n))
            .collect::<Vec<_>>()
    );
    dst.delete(foreign);
    on(&fx, &dloc, false, &["--json", "prune"]).ok();
    assert!(packs(&dst).is_empty(), "{:?}", packs(&dst));
    let out = copy(&fx, &dst, false, &[]);
    out.ok();
    assert_restores(&fx, &dloc, &snap, &src, "copied again after the sweep");
}

/// A copy adopting packs an interrupted copy left is held (SIGSTOP) after taking its lease at
/// the destination; a prune there condemns those unindexed packs but must leave the marker
/// pending (exit 3, naming the copy's pid); the copy completes; the next prune keeps what the
/// copy indexed; everything restores from the copy.
fn prune_at_the_destination_keeps_what_a_running_copy_adopts(backend: Backend) {
    let fx = Fixture::on(backend);
    let a = fx.path("a");
    write_file(&a.join("one.bin"), &random_bytes(1, 18 * MB));
    write_file(&a.join("two.bin"), &random_bytes(2, 18 * MB));
    let sa = Fixture::snap_id(&fx.backup(&[&a]));
    let dst = fx.fresh_store("dst");
    let dloc = dst.location();
    init_like(&fx, &dst, false).ok();
    // An interrupted copy: kill it once one pack is at the destination. On S3 its packs are
    // sent side by side, so it goes through a link of 2 MB/s a connection: the ~4 MiB pack
    // arrives seconds before the two of 16 MiB (unthrottled, all three could land between two
    // listings, and the copy would finish).
    let link = FaultProxy::start(s3::shared().addr());
    link.set(Fault::Throttle(2 * MB as u64));
    let link_endpoint = link.endpoint();
    let throttled: Vec<(&str, &OsStr)> = match backend {
        Backend::S3 => vec![("CAIRN_S3_ENDPOINT", OsStr::new(&link_endpoint))],
        Backend::Local => vec![],
    };
    let mut first = spawn_copy(&fx, &dst, &throttled);
    let start = Instant::now();
    while dst.list("data").is_empty() && !first.exited() {
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_micros(300));
    }
    first.kill9();
    let left = packs(&dst);
    assert!(
        snapshot_ids(&dst).is_empty() && !left.is_empty(),
        "the first copy could not be interrupted after one pack (packs there: {left:?})"
    );
    // On S3 the copy goes through a proxy that holds each response 40 ms: reading its lease
    // back (a listing and GETs) must not take longer than the whole copy.
    let proxy = FaultProxy::start(s3::shared().addr());
    proxy.set(Fault::Stall {
        every: 1,
        delay: Duration::from_millis(40),
    });
    let endpoint = proxy.endpoint();
    let slow: Vec<(&str, &OsStr)> = match backend {
        Backend::S3 => vec![("CAIRN_S3_ENDPOINT", OsStr::new(&endpoint))],
        Backend::Local => vec![],
    };
    let mut bg = spawn_copy(&fx, &dst, &slow);
    hold_after_lease(&fx, &dst, &mut bg);
    let out = on(&fx, &dloc, false, &["--json", "prune"]);
    out.code_is(3);
    let r = out.json();
    let why = r["markers_pending"][0]["reason"].as_str().expect("reason");
    assert!(
        why.contains(&host()) && why.contains(&bg.pid().to_string()),
        "{r:#}"
    );
    for p in left.keys() {
        assert!(dst.exists(p), "{p} deleted while a copy may adopt it");
    }
    bg.cont();
    let c = bg.finish();
    c.ok();
    assert_restores(&fx, &dloc, &sa, &a, "before the sweep");
    let out = on(&fx, &dloc, false, &["--json", "prune"]);
    out.ok();
    assert_eq!(
        out.json()["markers_pending"],
        serde_json::json!([]),
        "{out}"
    );
    assert_eq!(
        packs(&dst),
        packs(&fx.store),
        "prune removed packs the copy sent"
    );
    assert_restores(&fx, &dloc, &sa, &a, "after the sweep");
    let out = on(&fx, &dloc, false, &["--json", "prune"]);
    out.ok();
    assert_eq!(num(&out.json(), "packs_deleted"), 0, "{out}");
}
backend_tests!(prune_at_the_destination_keeps_what_a_running_copy_adopts);

/// The copy flavour of the lease-expiry race: a copy loads the destination's index (which has
/// the data of a snapshot forgotten there, so it will not send it), then is paused past its
/// lease expiry; a prune at the destination rightly deletes that data; when the copy resumes
/// it must not commit a snapshot that references it (SPEC §11: a writer whose lease expired
/// refuses to commit). Either it fails and writes no snapshot, or its snapshot restores.
#[test]
fn copy_paused_past_its_lease_expiry_must_not_commit() {
    let fx = Fixture::new();
    let expiry: &[(&str, &OsStr)] = &[("CAIRN_LEASE_EXPIRY", OsStr::new("4"))];
    let d = fx.path("d");
    write_file(&d.join("shared.bin"), &random_bytes(5, 2 * MB));
    let s1 = Fixture::snap_id(&fx.backup(&[&d]));
    let dst = fx.fresh_store("dst");
    let dloc = dst.location();
    init_like(&fx, &dst, false).ok();
    copy(&fx, &dst, false, &[]).ok();
    // S2 shares shared.bin with S1 and adds a lot.
    write_file(&d.join("new.bin"), &random_bytes(6, 40 * MB));
    let s2 = Fixture::snap_id(&fx.backup(&[&d]));
    dst.delete(&format!("snapshots/{s1}"));
    let mut bg = spawn_copy(&fx, &dst, expiry);
    hold_after_lease(&fx, &dst, &mut bg);
    std::thread::sleep(Duration::from_secs(6));
    let out = fx.run_env(
        &["-r", &dloc, "-k", s(&fx.write_key), "--json", "prune"],
        expiry,
    );
    out.ok();
    assert!(num(&out.json(), "packs_deleted") >= 1, "{out}");
    bg.cont();
    let c = bg.finish();
    if c.code == 0 {
        assert_restores(
            &fx,
            &dloc,
            &s2,
            &d,
            "BUG: a copy whose destination lease expired while it was paused committed a \
             snapshot whose data a prune deleted meanwhile",
        );
    } else {
        c.stderr_has(&["lease"]);
        assert!(
            !snapshot_ids(&dst).contains(&s2),
            "a failed copy wrote its snapshot"
        );
    }
}

/// Copying "every snapshot" while one source snapshot object is damaged: the others are
/// copied, but the damaged one must not be skipped silently — the command has to say so and
/// must not report plain success (exit 0), or an offsite copy job would never notice.
#[test]
fn copy_all_does_not_silently_skip_an_unreadable_snapshot() {
    let fx = Fixture::new();
    let versions = TREE.back_up(&fx, 0, 2);
    let victim = format!("snapshots/{}", versions[0].0);
    fx.store.flip_byte(&victim);
    let dst = fx.fresh_store("dst");
    init_like(&fx, &dst, false).ok();
    let out = copy(&fx, &dst, false, &[]);
    assert!(
        !snapshot_ids(&dst).contains(&versions[0].0),
        "a damaged snapshot object was copied"
    );
    assert!(
        out.stderr.contains(&versions[0].0[..8]),
        "the unreadable snapshot is not named\n{out}"
    );
    assert_ne!(
        out.code, 0,
        "copy reported success although snapshot {} was not copied\n{out}",
        versions[0].0
    );
}

/// Copies across backends: a local repository to S3 (offsite), then from S3 to another local
/// directory; every hop restores byte for byte and a repeated copy sends nothing.
#[test]
fn copy_between_local_and_s3() {
    let fx = Fixture::new();
    let versions = TREE.back_up(&fx, 0, 2);
    let remote = Backend::S3.fresh(fx.tmp.path(), "offsite");
    let rloc = remote.location();
    let env = remote.env();
    let wk = |repo: &str, args: &[&str]| {
        let mut a = vec!["-r", repo, "-k", s(&fx.write_key)];
        a.extend_from_slice(args);
        fx.run_env(&a, &env_refs(&env))
    };
    let copy_to = |from: &str, to: &str| wk(from, &["--json", "copy", "--to", to]);
    wk(&rloc, &["init", "--like", s(&fx.repo)]).ok();
    let out = copy_to(s(&fx.repo), &rloc);
    out.ok();
    assert_eq!(strs(&out.json(), "snapshots_copied").len(), 2, "{out}");
    assert_eq!(packs(&remote), packs(&fx.store));
    let back = fx.path("back");
    wk(s(&back), &["init", "--like", &rloc]).ok();
    let out = copy_to(&rloc, s(&back));
    out.ok();
    assert_eq!(strs(&out.json(), "snapshots_copied").len(), 2, "{out}");
    for (snap, src) in &versions {
        assert_restores(&fx, &rloc, snap, src, "local → S3");
        assert_restores(&fx, s(&back), snap, src, "local → S3 → local");
    }
    let out = copy_to(&rloc, s(&back));
    out.ok();
    assert_eq!(num(&out.json(), "packs_copied"), 0, "{out}");
}

/// A write-key holder plants an index object listing the blobs of an honest backup in a junk
/// pack of its own (its id, and the index object's name, sorted first so that the claim is the
/// listing a lookup finds). Copy checks each pack's listing against the pack's own trailer:
/// it names the pack and copies no snapshot whose data it would have lost, and once `repair
/// index` has dropped the claim, the copy is whole.
#[test]
fn copy_does_not_follow_a_planted_index_claim() {
    let fx = Fixture::new();
    let (d, files, snap) = fx.back_up_small_files(70);
    let (honest_pack, honest_index) = (fx.lowest_name("data"), fx.lowest_name("index"));
    let crafter = Crafter::new(&fx);
    let junk = crafter.junk_pack_below(79, &honest_pack);
    let junk_id = junk.id;
    // Planted again until the index object's name sorts first too.
    loop {
        let id = crafter.plant_claim(junk.clone(), &files).to_hex();
        if id < honest_index {
            break;
        }
        fx.store.delete(&format!("index/{id}"));
    }

    let dst = fx.fresh_store("dst");
    init_like(&fx, &dst, true).ok();
    let out = copy(&fx, &dst, true, &[]);
    out.code_is(1);
    out.stderr_has(&[
        &junk_id.to_hex()[..16],
        "planted claim",
        "cairn repair index",
    ]);
    assert!(
        snapshot_ids(&dst).is_empty(),
        "a snapshot was copied on the claim"
    );

    fx.id(&["repair", "index"]).ok();
    copy(&fx, &dst, true, &[]).ok();
    assert_restores(&fx, &dst.location(), &snap, &d, "copied after repair index");
}
