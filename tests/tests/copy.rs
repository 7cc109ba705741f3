//! `cairn init --like` and `cairn copy` end to end (SPEC.md §11 "Copy"): every snapshot
//! arrives as the same ciphertext and restores byte for byte from the copy; a second copy sends
//! nothing; a write key suffices; a repository not made with `--like` is refused clearly; an
//! interrupted copy (kill -9 at every rename, and after some packs) resumes, adopting what was
//! sent; one snapshot can be copied alone; a damaged source pack is named and no snapshot is
//! written; at the destination, copy is a writer: a pending prune's condemned packs are
//! refused, a prune running meanwhile keeps what the copy sends, and a copy paused past its
//! lease expiry must not commit.

use cairn_e2e::background::*;
use cairn_e2e::*;
use cairn_format::envelope;
use cairn_format::gc::{LeaseKind, LeaseRecord};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Delete object `name` of a repository, on either backend.
fn delete_object(store: &Store, name: &str) {
    match store {
        Store::Dir(d) => {
            fs::remove_file(d.join(name)).unwrap_or_else(|e| panic!("deleting {name}: {e}"))
        }
        Store::S3 { bucket, prefix } => {
            let key = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            s3::shared().delete(bucket, &key)
        }
    }
}

/// Every pack object (`data/…` and `tree/…`) with its size.
fn packs(store: &Store) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = store.list("data").into_iter().collect();
    out.extend(store.list("tree"));
    out
}

/// Snapshot ids of a repository.
fn snapshot_ids(store: &Store) -> BTreeSet<String> {
    store
        .names("snapshots")
        .into_iter()
        .map(|n| n.trim_start_matches("snapshots/").to_string())
        .collect()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

fn strs(v: &Value, key: &str) -> BTreeSet<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array in {v:#}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

fn meta_identity(fx: &Fixture) -> age::x25519::Identity {
    envelope::parse_identity(&fx.write_key_record().meta_identity).expect("meta identity")
}

/// Every lease object of `store` (a repository sharing `fx`'s keys) with its record.
fn leases(fx: &Fixture, store: &Store) -> Vec<(String, Option<LeaseRecord>)> {
    let id = meta_identity(fx);
    store
        .names("locks")
        .into_iter()
        .map(|n| {
            let rec = store.read(&n).and_then(|ct| {
                envelope::decrypt(&ct, &[&id as &dyn age::Identity], 1 << 20)
                    .ok()
                    .and_then(|p| LeaseRecord::decode(&p).ok())
            });
            (n, rec)
        })
        .collect()
}

/// Store a lease record at `name` of `store`, as a process on another host would.
fn put_foreign_lease(fx: &Fixture, store: &Store, name: &str) {
    let now = now_unix();
    let rec = LeaseRecord {
        kind: LeaseKind::Writer,
        host: "backup-host.example".into(),
        pid: 4242,
        started_unix: now - 60,
        renewed_unix: now,
        seen_markers: Some(Vec::new()),
    };
    let keys = fx.write_key_record();
    let mut recips = vec![meta_identity(fx).to_public()];
    for r in &keys.master_recipients {
        recips.push(envelope::parse_recipient(r).expect("recipient"));
    }
    store.write(name, &envelope::encrypt(&rec.encode(), &recips));
}

/// Flip one byte of object `name` in the middle.
fn flip_byte(store: &Store, name: &str) {
    let mut b = store.read(name).expect("object");
    let at = b.len() / 2;
    b[at] ^= 0x40;
    store.write(name, &b);
}

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
        &["init", "--like", s(&fx.repo)],
    )
}

/// `cairn --json copy --to DST [snapshots]` from the fixture's repository.
fn copy(fx: &Fixture, dst: &Store, identity: bool, snaps: &[&str]) -> Output {
    let loc = dst.location();
    let mut a = vec!["--json", "copy", "--to", &loc];
    a.extend_from_slice(snaps);
    on(fx, s(&fx.repo), identity, &a)
}

/// A new, unused directory inside the fixture.
fn fresh_dir(fx: &Fixture, stem: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    fx.path(&format!("{stem}-{}", N.fetch_add(1, Ordering::Relaxed)))
}

/// Restore `snap` from `repo` with the identity and compare it with `src`.
#[track_caller]
fn assert_restores(fx: &Fixture, repo: &str, snap: &str, src: &Path, ctx: &str) {
    let target = fresh_dir(fx, "restore");
    let out = on(fx, repo, true, &["restore", snap, "--target", s(&target)]);
    assert_eq!(
        out.code, 0,
        "{ctx}: snapshot {snap} does not restore\n{out}"
    );
    let d = compare_trees(src, &Fixture::restored(&target, src));
    assert!(
        d.is_empty(),
        "{ctx}: snapshot {snap} restores differently:\n{}",
        d.join("\n")
    );
    fs::remove_dir_all(&target).ok();
}

/// A source tree `dir`, version `v`: files shared by every version, one changed per version,
/// and one unique to it.
fn write_version(dir: &Path, v: u64) {
    for i in 0..4u64 {
        let generation = if i < v { i + 1 } else { 0 };
        write_file(
            &dir.join(format!("f{i}.bin")),
            &random_bytes(1000 * generation + i, 300_000),
        );
    }
    write_file(&dir.join("unique.bin"), &random_bytes(50_000 + v, 150_000));
    write_file(&dir.join("notes.yaml"), &text_bytes(60_000 + v, 30_000));
    write_file(&dir.join("etc/small.conf"), b"setting = on\n");
}

/// Back up `n` versions, each from its own directory; (snapshot, source) per version.
fn back_up_versions(fx: &Fixture, first: u64, n: u64) -> Vec<(String, PathBuf)> {
    (first..first + n)
        .map(|v| {
            let dir = fx.path(&format!("v{v}"));
            write_version(&dir, v);
            (Fixture::snap_id(&fx.backup(&[&dir])), dir)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Background processes and kills
// ---------------------------------------------------------------------------------------------

/// `cairn --json copy --to DST` from the fixture's repository, in the background.
fn spawn_copy(fx: &Fixture, dst: &Store, extra_env: &[(&str, &OsStr)]) -> Bg {
    let env = fx.env();
    let mut all = env_refs(&env);
    all.extend_from_slice(extra_env);
    let loc = dst.location();
    spawn_cairn(
        &[
            "-r",
            s(&fx.repo),
            "-k",
            s(&fx.write_key),
            "--json",
            "copy",
            "--to",
            &loc,
        ],
        &all,
    )
}

/// Wait until the copy's lease at `dst` records the markers it has seen (it has loaded the
/// destination index), then SIGSTOP it.
fn hold_after_lease(fx: &Fixture, dst: &Store, bg: &mut Bg) -> LeaseRecord {
    let start = Instant::now();
    loop {
        let found = leases(fx, dst)
            .into_iter()
            .find_map(|(_, r)| r.filter(|r| r.pid == bg.pid() && r.seen_markers.is_some()));
        if let Some(rec) = found {
            bg.signal(rustix::process::Signal::STOP);
            assert!(
                snapshot_ids(dst).is_empty() || !bg.exited(),
                "the copy finished before it could be held"
            );
            return rec;
        }
        assert!(
            !bg.exited(),
            "{} finished before it could be held",
            bg.cmdline
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no lease appeared"
        );
        std::thread::sleep(Duration::from_micros(300));
    }
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
    let args = [
        "-r",
        s(&fx.repo),
        "-k",
        s(&fx.write_key),
        "--json",
        "copy",
        "--to",
        s(dst),
    ];
    match kill {
        Kill::AtSyscall { class, n } => {
            let set = MUTATIONS[class];
            let mut cmd = clean_command(Path::new("strace"), &[]);
            cmd.args(["-f", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("trace={set}"))
                .arg("-e")
                .arg(format!("inject={set}:signal=KILL:when={n}"))
                .arg("--")
                .arg(cairn_bin())
                .args(args);
            let out = cmd.output().expect("running strace");
            if out.status.signal() == Some(9) || out.status.code() == Some(137) {
                return None;
            }
            Some(Output {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stdout_bytes: out.stdout.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                cmdline: format!("strace … cairn {}", args.join(" ")),
            })
        }
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
    let versions = back_up_versions(&fx, 0, 3);
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
    assert!(dst.names("locks").is_empty(), "{:?}", dst.names("locks"));
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
    let (v3, v3src) = back_up_versions(&fx, 3, 1).remove(0);
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
    delete_object(&dst, &format!("snapshots/{}", versions[0].0));
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
    let versions = back_up_versions(&fx, 0, 1);
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
    let out = fx.run(&[
        "-r",
        s(&fx.repo),
        "-k",
        s(&fx.write_key),
        "copy",
        "--to",
        s(&nowhere),
    ]);
    out.failed().stderr_has(&["nowhere"]);
    assert!(
        files_below(&nowhere).is_empty(),
        "copy wrote into a location that is no repository"
    );
    // And the source is fine.
    assert_restores(&fx, s(&fx.repo), &versions[0].0, &versions[0].1, "source");
}

/// Copying named snapshots copies only those (and only the packs they need).
#[test]
fn copy_of_named_snapshots_copies_only_those() {
    let fx = Fixture::new();
    // Three unrelated trees: no shared data.
    let mut snaps = Vec::new();
    for i in 0..3u64 {
        let d = fx.path(&format!("t{i}"));
        write_file(&d.join("data.bin"), &random_bytes(100 + i, 400_000));
        let before = packs(&fx.store);
        let id = Fixture::snap_id(&fx.backup(&[&d]));
        let own: BTreeSet<String> = packs(&fx.store)
            .into_keys()
            .filter(|n| !before.contains_key(n))
            .collect();
        snaps.push((id, d, own));
    }
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

/// A data pack of the source damaged on disk: copy fails, names the pack, and writes no
/// snapshot (nor index) at the destination; once the pack is repaired, copy completes and
/// everything restores.
#[test]
fn copy_of_a_damaged_pack_names_it_and_writes_no_snapshot() {
    let fx = Fixture::new();
    let versions = back_up_versions(&fx, 0, 2);
    let data = fx.object_names("data");
    let victim = data[0].clone();
    let original = fx.store.read(&victim).unwrap();
    flip_byte(&fx.store, &victim);
    let dst = fx.fresh_store("dst");
    init_like(&fx, &dst, false).ok();
    let out = copy(&fx, &dst, false, &[]);
    let pack_id = victim.rsplit('/').next().unwrap();
    out.failed().stderr_has(&[&pack_id[..16]]);
    assert!(
        snapshot_ids(&dst).is_empty(),
        "a failed copy wrote snapshots"
    );
    assert!(
        dst.names("index").is_empty(),
        "a failed copy wrote an index"
    );
    assert!(!dst.exists(&victim), "the damaged pack was copied");
    assert!(dst.names("locks").is_empty(), "{:?}", dst.names("locks"));

    // A damaged tree pack too.
    let tree = fx.object_names("tree")[0].clone();
    let tree_original = fx.store.read(&tree).unwrap();
    flip_byte(&fx.store, &tree);
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
                    let target = fresh_dir(&fx, "restore");
                    let o = on(
                        &fx,
                        s(&dst),
                        true,
                        &["restore", snap, "--target", s(&target)],
                    );
                    if o.code != 0 {
                        p.push(format!("{snap} does not restore: {}", o.stderr.trim()));
                    } else {
                        let d = compare_trees(src, &Fixture::restored(&target, src));
                        if !d.is_empty() {
                            p.push(format!("{snap} restores differently: {}", d.join("; ")));
                        }
                    }
                    fs::remove_dir_all(&target).ok();
                }
            }
            problems.push((format!("{kill:?}"), p));
        }
        fs::remove_dir_all(&dst).ok();
    }
    eprintln!("copy killed {killed} times");
    assert!(killed >= 3, "the copy was hardly ever killed");
    assert!(
        adopted_some,
        "no interrupted copy left packs that the next one adopted"
    );
    let bad: Vec<String> = problems
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(k, p)| format!("{k}:\n  - {}", p.join("\n  - ")))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {killed} kill points went wrong:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// At the destination, a pending prune marker condemns the packs of a forgotten copied
/// snapshot: copying that snapshot again must refuse (the packs' names would be swept) and
/// write nothing; once the marker is swept, the copy goes through and restores.
#[test]
fn copy_refuses_packs_a_pending_prune_condemned_at_the_destination() {
    let fx = Fixture::new();
    let versions = back_up_versions(&fx, 0, 1);
    let (snap, src) = versions[0].clone();
    let dst = fx.fresh_store("dst");
    let dloc = dst.location();
    init_like(&fx, &dst, false).ok();
    copy(&fx, &dst, false, &[]).ok();
    delete_object(&dst, &format!("snapshots/{snap}"));
    let foreign = "locks/0123456789abcdef0123456789abcdef";
    put_foreign_lease(&fx, &dst, foreign);
    let out = on(&fx, &dloc, false, &["--json", "prune"]);
    out.code_is(3);
    let before = dst.contents();
    let out = copy(&fx, &dst, false, &[]);
    out.failed().stderr_has(&["condemned", "prune"]);
    let after = dst.contents();
    assert!(
        before == after,
        "a refused copy changed the destination: {:?}",
        after
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !before.iter().any(|(b, _)| b == *n))
            .collect::<Vec<_>>()
    );
    delete_object(&dst, foreign);
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
    // An interrupted copy: kill it once one pack is at the destination.
    let mut first = spawn_copy(&fx, &dst, &[]);
    let start = Instant::now();
    while dst.list("data").is_empty() && !first.exited() {
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_micros(300));
    }
    first.kill9();
    let left = packs(&dst);
    if !snapshot_ids(&dst).is_empty() || left.is_empty() {
        eprintln!("note: the first copy could not be interrupted after one pack; continuing");
    }
    let mut bg = spawn_copy(&fx, &dst, &[]);
    hold_after_lease(&fx, &dst, &mut bg);
    let out = on(&fx, &dloc, false, &["--json", "prune"]);
    if !left.is_empty() {
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
    } else {
        assert!(out.code == 0 || out.code == 3, "{out}");
    }
    bg.signal(rustix::process::Signal::CONT);
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
    delete_object(&dst, &format!("snapshots/{s1}"));
    let mut bg = spawn_copy(&fx, &dst, expiry);
    hold_after_lease(&fx, &dst, &mut bg);
    std::thread::sleep(Duration::from_secs(6));
    let out = fx.run_env(
        &["-r", &dloc, "-k", s(&fx.write_key), "--json", "prune"],
        expiry,
    );
    out.ok();
    assert!(num(&out.json(), "packs_deleted") >= 1, "{out}");
    bg.signal(rustix::process::Signal::CONT);
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
    let versions = back_up_versions(&fx, 0, 2);
    let victim = format!("snapshots/{}", versions[0].0);
    flip_byte(&fx.store, &victim);
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
    let versions = back_up_versions(&fx, 0, 2);
    let remote = Backend::S3.fresh(fx.tmp.path(), "offsite");
    let rloc = remote.location();
    let env = remote.env();
    let run = |args: &[&str]| fx.run_env(args, &env_refs(&env));
    run(&[
        "-r",
        &rloc,
        "-k",
        s(&fx.write_key),
        "init",
        "--like",
        s(&fx.repo),
    ])
    .ok();
    let out = run(&[
        "-r",
        s(&fx.repo),
        "-k",
        s(&fx.write_key),
        "--json",
        "copy",
        "--to",
        &rloc,
    ]);
    out.ok();
    assert_eq!(strs(&out.json(), "snapshots_copied").len(), 2, "{out}");
    assert_eq!(packs(&remote), packs(&fx.store));
    let back = fx.path("back");
    run(&[
        "-r",
        s(&back),
        "-k",
        s(&fx.write_key),
        "init",
        "--like",
        &rloc,
    ])
    .ok();
    let out = run(&[
        "-r",
        &rloc,
        "-k",
        s(&fx.write_key),
        "--json",
        "copy",
        "--to",
        s(&back),
    ]);
    out.ok();
    assert_eq!(strs(&out.json(), "snapshots_copied").len(), 2, "{out}");
    for (snap, src) in &versions {
        let target = fresh_dir(&fx, "restore");
        run(&[
            "-r",
            &rloc,
            "-i",
            s(&fx.identity),
            "restore",
            snap,
            "--target",
            s(&target),
        ])
        .ok();
        assert_trees_equal(src, &Fixture::restored(&target, src));
        assert_restores(&fx, s(&back), snap, src, "local → S3 → local");
    }
    let out = run(&[
        "-r",
        &rloc,
        "-k",
        s(&fx.write_key),
        "--json",
        "copy",
        "--to",
        s(&back),
    ]);
    out.ok();
    assert_eq!(num(&out.json(), "packs_copied"), 0, "{out}");
}
