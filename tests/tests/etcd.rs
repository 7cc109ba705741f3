//! etcd snapshots and static pod resources against a real etcd (Debian's 3.4) with TLS and
//! client-certificate authentication: live backups, `--snapshot-file`, endpoint selection, TLS
//! failures, a member killed mid-stream, damaged packs, the cluster-backup layout that
//! cluster-restore.sh consumes, cluster-version warnings and page-level deduplication.
//!
//! Every restored database is checked with etcd's own tools (`etcdctl snapshot status`,
//! `etcdctl snapshot restore` with its hash check, an etcd started on the restored data).
//! Tests skip with a note only when etcd is not installed.

use cairn_e2e::etcd::{self, Etcd};
use cairn_e2e::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Objects in the usual keyspace: ~2.5 KB each, ~8 MB in all.
const KEYS: usize = 3000;

/// Run cairn on `fx`'s repository with the write key: `args` then `extra`.
fn wk(fx: &Fixture, args: &[&str], extra: &[String]) -> Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(extra.iter().map(String::as_str));
    fx.wk(&a)
}

/// `snapshots --json` of `fx`.
fn snapshots(fx: &Fixture) -> Vec<Value> {
    let out = fx.wk(&["--json", "snapshots"]);
    out.ok();
    out.json().as_array().expect("snapshot list").clone()
}

/// The facts of snapshot `id` as `snapshots --json` lists them.
fn listed_facts(fx: &Fixture, id: &str) -> Value {
    snapshots(fx)
        .into_iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("snapshot {id} is not listed"))["facts"]
        .clone()
}

/// A live `backup etcd --json` with the valid client certificate; panics unless it succeeds.
fn live_backup(fx: &Fixture, e: &Etcd) -> Value {
    let out = wk(fx, &["--json", "backup", "etcd"], &e.cairn_args());
    out.ok();
    out.json()
}

/// Restore `snap` in the cluster-backup layout into `dir`; panics unless it succeeds.
/// Returns the file names written.
fn restore_cluster_backup(fx: &Fixture, snap: &str, dir: &Path) -> Vec<String> {
    fx.restore(snap, dir, &["--layout", "cluster-backup"]).ok();
    names_in(dir)
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The stamp in `snapshot_<ts>.db` or `static_kuberesources_<ts>.tar.gz`.
fn stamp_of(name: &str) -> &str {
    name.strip_prefix("snapshot_")
        .and_then(|n| n.strip_suffix(".db"))
        .or_else(|| {
            name.strip_prefix("static_kuberesources_")
                .and_then(|n| n.strip_suffix(".tar.gz"))
        })
        .unwrap_or_else(|| panic!("{name} is not a cluster-backup file name"))
}

/// `YYYY-MM-DD_HHMMSS`, as cluster-backup.sh stamps its files.
fn assert_stamp_format(stamp: &str) {
    let b = stamp.as_bytes();
    let ok = b.len() == 17
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'_',
            _ => c.is_ascii_digit(),
        });
    assert!(ok, "{stamp:?} is not a YYYY-MM-DD_HHMMSS stamp");
}

/// The single `snapshot_<ts>.db` written into `dir` by a cluster-backup restore.
fn restored_db(fx: &Fixture, snap: &str, dir: &Path) -> PathBuf {
    let names = restore_cluster_backup(fx, snap, dir);
    assert_eq!(names.len(), 1, "expected exactly one file: {names:?}");
    assert_stamp_format(stamp_of(&names[0]));
    assert!(names[0].ends_with(".db"), "{names:?}");
    dir.join(&names[0])
}

/// The last 32 bytes of `file` are the sha256 of the rest (checked with the openssl CLI).
fn has_valid_trailer(file: &Path) -> bool {
    let bytes = fs::read(file).unwrap();
    if bytes.len() < 32 {
        return false;
    }
    let (db, trailer) = bytes.split_at(bytes.len() - 32);
    let tmp = scratch();
    let body = tmp.path().join("body");
    fs::write(&body, db).unwrap();
    let digest = sh("openssl", &["dgst", "-sha256", "-binary", s(&body)]);
    digest == trailer
}

// ---------------------------------------------------------------------------------------------
// 1. Live backup over TLS
// ---------------------------------------------------------------------------------------------

#[test]
fn live_backup_over_tls_records_member_version_and_verified_trailer() {
    if !etcd::available("live_backup_over_tls_records_member_version_and_verified_trailer") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, KEYS);
    let fx = Fixture::new();
    let revision = e.revision();

    let out = wk(&fx, &["backup", "etcd"], &e.cairn_args());
    out.ok();
    let member = e.member_id();
    out.stderr_has(&[
        &format!("using etcd member {member} at {}", e.endpoint()),
        "leader",
        "etcd 3.4.",
        &format!("revision {revision}"),
        "first healthy endpoint given",
    ]);
    let snaps = snapshots(&fx);
    assert_eq!(snaps.len(), 1);
    let snap = &snaps[0];
    let id = snap["id"].as_str().unwrap();
    let facts = &snap["facts"];
    assert_eq!(snap["source"], "etcd", "{snap}");
    assert_eq!(facts["etcd.source"], "live", "{facts}");
    assert_eq!(facts["etcd.endpoint"], e.endpoint().as_str(), "{facts}");
    assert_eq!(facts["etcd.member"], member.as_str(), "{facts}");
    assert_eq!(
        facts["etcd.version"],
        e.status()["version"].as_str().unwrap(),
        "{facts}"
    );
    assert_eq!(facts["cluster.version"], etcd::CLUSTER_VERSION, "{facts}");
    assert_eq!(facts["etcd.sha256"], "verified", "{facts}");

    // The restored file is what `etcdctl snapshot save` writes: database + sha256 trailer,
    // named snapshot_<ts>.db, the size recorded.
    let dir = fx.path("out");
    let db = restored_db(&fx, id, &dir);
    assert_eq!(
        facts["etcd.file"],
        db.file_name().unwrap().to_str().unwrap(),
        "{facts}"
    );
    assert_eq!(
        snap["paths"][0],
        format!("/{}", facts["etcd.file"].as_str().unwrap())
    );
    let size = fs::metadata(&db).unwrap().len();
    assert_eq!(facts["etcd.size"], size.to_string(), "{facts}");
    assert_eq!(snap["stats"]["bytes"], size, "{snap}");
    assert!(
        has_valid_trailer(&db),
        "the restored file has no valid sha256 trailer"
    );
    let restored = etcd::snapshot_status(&db);
    assert_eq!(restored.revision as i64, revision, "{restored:?}");
    assert_eq!(restored.total_size + 32, size, "{restored:?}");

    // etcdctl's own snapshot, taken right after with no writes in between, has the same
    // content.
    let saved = fx.path("etcdctl.db");
    e.snapshot_save(&saved);
    let theirs = etcd::snapshot_status(&saved);
    assert_eq!(
        (restored.revision, restored.total_keys, &restored.hash),
        (theirs.revision, theirs.total_keys, &theirs.hash),
        "cairn's snapshot and etcdctl's differ"
    );
    assert!(restored.total_keys > KEYS as u64, "{restored:?}");

    // The text listing shows the cluster version.
    let out = fx.wk(&["snapshots"]);
    out.ok();
    assert!(
        out.stdout
            .contains(&format!("cluster {}", etcd::CLUSTER_VERSION)),
        "{out}"
    );
}

#[test]
fn live_backup_records_bbolt_facts_equal_to_etcdctl_status() {
    if !etcd::available("live_backup_records_bbolt_facts_equal_to_etcdctl_status") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, KEYS);
    let fx = Fixture::new();
    let report = live_backup(&fx, &e);
    let id = Fixture::snap_id(&report);
    let saved = fx.path("etcdctl.db");
    e.snapshot_save(&saved);
    let theirs = etcd::snapshot_status(&saved);

    let facts = listed_facts(&fx, &id);
    assert_eq!(facts, report["facts"], "backup report and listing disagree");
    let recorded = etcd::status_from_facts(&facts)
        .unwrap_or_else(|| panic!("a live backup records no bbolt facts: {facts}"));
    let db = restored_db(&fx, &id, &fx.path("out"));
    assert_eq!(
        recorded,
        etcd::snapshot_status(&db),
        "facts vs etcdctl snapshot status"
    );
    assert_eq!(
        (recorded.revision, recorded.total_keys),
        (theirs.revision, theirs.total_keys),
        "facts vs an etcdctl snapshot save taken right after"
    );
    // And the listing shows them.
    let out = fx.wk(&["snapshots"]);
    assert!(
        out.stdout.contains(&format!(
            "etcd revision {}, {} keys",
            recorded.revision, recorded.total_keys
        )),
        "{out}"
    );
}

#[test]
fn restored_database_is_private_like_etcdctl_writes_it() {
    use std::os::unix::fs::PermissionsExt;
    if !etcd::available("restored_database_is_private_like_etcdctl_writes_it") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 50);
    let fx = Fixture::new();
    let id = Fixture::snap_id(&live_backup(&fx, &e));
    let saved = fx.path("etcdctl.db");
    e.snapshot_save(&saved);
    let theirs = fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
    assert_eq!(theirs, 0o600, "etcdctl itself");
    let ls = fx.wk(&["ls", "-l", &id]);
    ls.ok();
    assert!(ls.stdout.starts_with("-rw------- "), "{ls}");
    let db = restored_db(&fx, &id, &fx.path("out"));
    let mode = fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:04o}", db.display());
}

// ---------------------------------------------------------------------------------------------
// 2. The restored file is usable by etcd itself
// ---------------------------------------------------------------------------------------------

#[test]
fn restored_snapshot_passes_etcdctl_restore_and_serves_the_same_keys() {
    if !etcd::available("restored_snapshot_passes_etcdctl_restore_and_serves_the_same_keys") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, KEYS);
    // A second generation of some keys, so revisions and versions matter.
    etcd::update_keys(&e, KEYS, 7, 2);
    e.etcdctl(&["del", &etcd::key_of(10)]);
    let fx = Fixture::new();
    let id = Fixture::snap_id(&live_backup(&fx, &e));
    let db = restored_db(&fx, &id, &fx.path("out"));

    // etcd's hash check is really on: a copy with a damaged trailer is refused.
    let bad = fx.path("bad.db");
    let mut bytes = fs::read(&db).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x01;
    fs::write(&bad, &bytes).unwrap();
    let refused = etcd::snapshot_restore(&bad, &fx.path("bad-data"), "restored", 1, false);
    assert!(
        !refused.status.success(),
        "etcdctl accepted a damaged trailer: the hash check is not on"
    );

    let data = fx.path("restored-data");
    let peer = etcd::free_port();
    let out = etcd::snapshot_restore(&db, &data, "restored", peer, false);
    assert!(
        out.status.success(),
        "etcdctl snapshot restore (hash check on) refused cairn's file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Etcd::start_with(e.certs.clone(), Some((data, "restored".into(), peer)));
    let original = etcd::dump(&e);
    let restored = etcd::dump(&r);
    assert!(original.len() > KEYS, "{} keys", original.len());
    assert_eq!(original.len(), restored.len(), "key counts differ");
    for (a, b) in original.iter().zip(&restored) {
        assert_eq!(a, b, "the restored etcd serves something else");
    }
    assert_eq!(r.revision(), e.revision());
    let v = r.etcdctl(&["get", etcd::CLUSTER_VERSION_KEY, "--print-value-only"]);
    assert!(String::from_utf8_lossy(&v).contains(etcd::CLUSTER_VERSION));
}

// ---------------------------------------------------------------------------------------------
// 3. Snapshot files
// ---------------------------------------------------------------------------------------------

#[test]
fn snapshot_file_facts_equal_etcdctl_status_and_bad_files_are_refused() {
    if !etcd::available("snapshot_file_facts_equal_etcdctl_status_and_bad_files_are_refused") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 1000);
    let fx = Fixture::new();
    let file = fx.path("snapshot_2026-11-21_030000.db");
    e.snapshot_save(&file);
    let theirs = etcd::snapshot_status(&file);

    let out = fx.wk(&["--json", "backup", "etcd", "--snapshot-file", s(&file)]);
    out.ok();
    let report = out.json();
    let id = Fixture::snap_id(&report);
    let facts = listed_facts(&fx, &id);
    assert_eq!(facts, report["facts"]);
    assert_eq!(
        etcd::status_from_facts(&facts).expect("bbolt facts recorded"),
        theirs,
        "cairn's facts vs etcdctl snapshot status: {facts}"
    );
    assert_eq!(facts["etcd.sha256"], "verified", "{facts}");
    // The name cluster-backup.sh gave it is kept.
    assert_eq!(
        facts["etcd.file"], "snapshot_2026-11-21_030000.db",
        "{facts}"
    );
    assert_eq!(
        facts["etcd.size"],
        fs::metadata(&file).unwrap().len().to_string()
    );
    let out = fx.wk(&["snapshots"]);
    assert!(
        out.stdout.contains(&format!(
            "etcd revision {}, {} keys",
            theirs.revision, theirs.total_keys
        )) && out.stdout.contains(&format!("hash {}", theirs.hash)),
        "{out}"
    );
    // Restored byte-exact.
    let db = restored_db(&fx, &id, &fx.path("out"));
    assert_eq!(db.file_name().unwrap(), file.file_name().unwrap());
    assert_eq!(fs::read(&db).unwrap(), fs::read(&file).unwrap());

    // Without its trailer: refused, saying what to do, nothing saved.
    let bare = fx.path("bare.db");
    let bytes = fs::read(&file).unwrap();
    fs::write(&bare, &bytes[..bytes.len() - 32]).unwrap();
    let before = snapshots(&fx).len();
    let out = fx.wk(&["backup", "etcd", "--snapshot-file", s(&bare)]);
    out.code_is(1).stderr_has(&["sha256", "--skip-hash-check"]);
    assert_eq!(snapshots(&fx).len(), before, "a refused file was saved");
    assert_eq!(etcd::snapshot_objects(&fx.repo), before);

    // Accepted with --skip-hash-check, with a warning, recorded as such.
    let out = fx.wk(&[
        "--json",
        "backup",
        "etcd",
        "--snapshot-file",
        s(&bare),
        "--skip-hash-check",
    ]);
    out.ok()
        .stderr_has(&["\"level\":\"WARN\"", "--skip-hash-check"]);
    let bare_id = Fixture::snap_id(&out.json());
    let facts = listed_facts(&fx, &bare_id);
    assert_eq!(facts["etcd.sha256"], "missing", "{facts}");
    assert_eq!(
        etcd::status_from_facts(&facts).expect("bbolt facts recorded"),
        theirs,
        "{facts}"
    );
    // What the warning says holds: etcdctl wants --skip-hash-check for it.
    let db = restored_db(&fx, &bare_id, &fx.path("out-bare"));
    assert_eq!(fs::read(&db).unwrap(), &bytes[..bytes.len() - 32]);
    let without = etcd::snapshot_restore(&db, &fx.path("d1"), "x", 1, false);
    assert!(!without.status.success());
    let with = etcd::snapshot_restore(&db, &fx.path("d2"), "x", 1, true);
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );

    // Not bbolt (even with a valid sha256 trailer): refused before anything is stored.
    let data_before = fx.objects("data");
    let before = snapshots(&fx).len();
    let junk = fx.path("junk.db");
    let mut j = random_bytes(77, 256 * 1024);
    let body = fx.path("junk-body");
    fs::write(&body, &j).unwrap();
    j.extend(sh("openssl", &["dgst", "-sha256", "-binary", s(&body)]));
    fs::write(&junk, &j).unwrap();
    for f in [&junk, &body] {
        let out = fx.wk(&[
            "backup",
            "etcd",
            "--snapshot-file",
            s(f),
            "--skip-hash-check",
        ]);
        out.code_is(1)
            .stderr_has(&["bbolt", f.file_name().unwrap().to_str().unwrap()]);
    }
    let text = fx.path("notes.db");
    fs::write(&text, b"this is not an etcd database\n").unwrap();
    fx.wk(&["backup", "etcd", "--snapshot-file", s(&text)])
        .code_is(1)
        .stderr_has(&["notes.db"]);
    assert_eq!(snapshots(&fx).len(), before, "a refused file was saved");
    assert_eq!(fx.objects("data"), data_before, "a refused file left packs");
}

// ---------------------------------------------------------------------------------------------
// 4. Endpoint selection
// ---------------------------------------------------------------------------------------------

#[test]
fn endpoint_selection_skips_dead_members_and_names_each_failure() {
    if !etcd::available("endpoint_selection_skips_dead_members_and_names_each_failure") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 100);
    let fx = Fixture::new();
    let dead = format!("https://127.0.0.1:{}", etcd::free_port());
    let endpoints = format!("{dead},{}", e.endpoint());
    let args = e.cairn_args_with(&endpoints, Some(&e.certs.ca), Some(&e.certs.client));
    let out = wk(&fx, &["backup", "etcd"], &args);
    out.ok().stderr_has(&[
        &format!("skipping etcd endpoint {dead}"),
        "connection refused",
        &format!("using etcd member {} at {}", e.member_id(), e.endpoint()),
        "first healthy endpoint after 1 unhealthy",
    ]);
    let snaps = snapshots(&fx);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["facts"]["etcd.endpoint"], e.endpoint().as_str());

    // All dead: exit 1, each endpoint and its cause named, nothing saved.
    let dead2 = format!("https://127.0.0.1:{}", etcd::free_port());
    let args = e.cairn_args_with(
        &format!("{dead},{dead2}"),
        Some(&e.certs.ca),
        Some(&e.certs.client),
    );
    let out = wk(&fx, &["backup", "etcd", "--dial-timeout", "3s"], &args);
    out.code_is(1).stderr_has(&["no healthy etcd endpoint"]);
    for d in [&dead, &dead2] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains(d.as_str()) && l.contains("connection refused")),
            "{d} and its cause should be named on one line\n{out}"
        );
    }
    assert_eq!(snapshots(&fx).len(), 1, "a failed backup saved a snapshot");
}

// ---------------------------------------------------------------------------------------------
// 5. TLS failures
// ---------------------------------------------------------------------------------------------

/// A backup with these connection arguments fails with exit 1 naming `needles`, and saves
/// nothing.
#[track_caller]
fn refused(fx: &Fixture, args: &[String], needles: &[&str]) -> Output {
    let before = snapshots(fx).len();
    let out = wk(fx, &["backup", "etcd", "--timeout", "5"], args);
    out.code_is(1).stderr_has(needles);
    assert_eq!(
        snapshots(fx).len(),
        before,
        "a failed backup saved a snapshot"
    );
    out
}

#[test]
fn tls_failures_are_refused_and_save_nothing() {
    if !etcd::available("tls_failures_are_refused_and_save_nothing") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 20);
    let fx = Fixture::new();
    let c = &e.certs;
    let ep = e.endpoint();
    // The server certificate is not signed by the CA given: named precisely.
    refused(
        &fx,
        &e.cairn_args_with(&ep, Some(&c.other_ca), Some(&c.client)),
        &[
            &ep,
            "UnknownIssuer",
            "not signed by the CA given with --cacert",
        ],
    );
    // Client certificates the server rejects (from another CA, none, expired): refused,
    // endpoint named, nothing saved. (How precisely the cause is named is checked by the
    // ignored tests below.)
    for client in [Some(&c.other_client), None, Some(&c.expired_client)] {
        refused(&fx, &e.cairn_args_with(&ep, Some(&c.ca), client), &[&ep]);
    }
    // A certificate without its key: a usage problem named before connecting.
    let mut half = e.cairn_args_with(&ep, Some(&c.ca), None);
    half.extend(["--cert".into(), s(&c.client.cert).into()]);
    let out = wk(&fx, &["backup", "etcd"], &half);
    out.failed().stderr_has(&["--cert"]);
    // A CA file that does not exist.
    let mut missing = e.cairn_args_with(&ep, None, Some(&c.client));
    missing.extend(["--cacert".into(), "/nonexistent/ca.crt".into()]);
    refused(&fx, &missing, &["/nonexistent/ca.crt"]);
    // etcd itself refuses the expired certificate (it really is expired, not malformed).
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &ep,
            "--cacert",
            s(&c.ca.cert),
            "--cert",
            s(&c.expired_client.cert),
            "--key",
            s(&c.expired_client.key),
            "--command-timeout",
            "3s",
            "get",
            "x",
        ])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "etcd accepted an expired certificate"
    );
    // Still fine with the right ones.
    live_backup(&fx, &e);
    assert_eq!(snapshots(&fx).len(), 1);
}

#[test]
fn rejected_client_certificates_are_named_every_time() {
    if !etcd::available("rejected_client_certificates_are_named_every_time") {
        return;
    }
    let e = Etcd::start();
    let fx = Fixture::new();
    let c = &e.certs;
    let ep = e.endpoint();
    for client in [Some(&c.other_client), None, Some(&c.expired_client)] {
        for _ in 0..6 {
            refused(
                &fx,
                &e.cairn_args_with(&ep, Some(&c.ca), client),
                &[&ep, "client certificate"],
            );
        }
    }
}

#[test]
fn expired_client_certificate_is_named_as_expired() {
    if !etcd::available("expired_client_certificate_is_named_as_expired") {
        return;
    }
    let e = Etcd::start();
    let fx = Fixture::new();
    let c = &e.certs;
    refused(
        &fx,
        &e.cairn_args_with(&e.endpoint(), Some(&c.ca), Some(&c.expired_client)),
        &[&e.endpoint(), "expired"],
    );
}

// ---------------------------------------------------------------------------------------------
// 6. A member killed mid-stream
// ---------------------------------------------------------------------------------------------

/// Start cairn without waiting (same environment rules as the `cairn` helper).
fn spawn_cairn(args: &[String]) -> std::process::Child {
    let mut cmd = Command::new(cairn_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CAIRN_") || k.starts_with("ETCDCTL_") {
            cmd.env_remove(&*k);
        }
    }
    cmd.spawn().expect("starting cairn")
}

#[test]
fn etcd_killed_mid_stream_fails_the_backup_and_saves_nothing() {
    if !etcd::available("etcd_killed_mid_stream_fails_the_backup_and_saves_nothing") {
        return;
    }
    const BIG: usize = 150; // 1 MB values
    let mut e = Etcd::start();
    etcd::load_big(&e, BIG);
    let db_size = e.status()["dbSize"].as_u64().unwrap();
    assert!(db_size > 150_000_000, "database is only {db_size} bytes");
    let fx = Fixture::new();
    let mut args: Vec<String> = ["-r", s(&fx.repo), "-k", s(&fx.write_key), "backup", "etcd"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(e.cairn_args());

    let written0 = e.written_bytes();
    let mut child = spawn_cairn(&args);
    // Kill etcd once it has sent 16 MB of the snapshot (well before the end).
    let start = Instant::now();
    let sent = loop {
        let sent = e.written_bytes() - written0;
        if sent > 16_000_000 {
            break sent;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("cairn finished ({st}) before etcd could be killed; it sent {sent} bytes");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the snapshot stream did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    e.kill();
    assert!(
        sent < db_size / 2,
        "etcd had sent {sent} of {db_size} bytes when killed"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "cairn still runs 60 s after etcd died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("killed etcd after it sent {sent} of {db_size} bytes; cairn said:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "exit status\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in [e.endpoint().as_str(), "stream", "nothing was saved"] {
        assert!(
            stderr.contains(needle),
            "stderr should mention {needle:?}\n{stderr}"
        );
    }
    assert_eq!(snapshots(&fx).len(), 0, "a half snapshot was saved");
    assert_eq!(etcd::snapshot_objects(&fx.repo), 0);

    // The repository is still usable: another source backs up and restores.
    let src = fx.path("src");
    write_file(
        &src.join("etc/kubernetes/admin.conf"),
        &text_bytes(5, 20_000),
    );
    let id = Fixture::snap_id(&fx.backup(&[&src]));
    let target = fx.path("restored");
    fx.restore(&id, &target, &[]).ok();
    assert_trees_equal(&src, &Fixture::restored(&target, &src));
    assert_eq!(snapshots(&fx).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 7. Damage
// ---------------------------------------------------------------------------------------------

#[test]
fn flipped_byte_in_the_etcd_data_pack_is_named_by_restore() {
    if !etcd::available("flipped_byte_in_the_etcd_data_pack_is_named_by_restore") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 1000);
    let fx = Fixture::new();
    let before: BTreeSet<PathBuf> = fx.objects("data").into_iter().collect();
    let id = Fixture::snap_id(&live_backup(&fx, &e));
    let packs: Vec<PathBuf> = fx
        .objects("data")
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(!packs.is_empty());
    // Restores fine before the damage.
    restored_db(&fx, &id, &fx.path("ok"));

    let pack = &packs[0];
    let mut bytes = fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x04;
    fs::write(pack, &bytes).unwrap();
    let rel = pack.strip_prefix(&fx.repo).unwrap().to_str().unwrap();
    let target = fx.path("bad");
    fx.restore(&id, &target, &["--layout", "cluster-backup"])
        .code_is(1)
        .stderr_has(&[rel]);
    // Nothing under a final name, no temporary left behind.
    let left = if target.exists() {
        names_in(&target)
    } else {
        Vec::new()
    };
    assert!(left.is_empty(), "left in the target: {left:?}");
}

/// Store a snapshot of source etcd whose only file is `snapshot_<ts>.db` with content `db`,
/// recording `facts` (as a backup that recorded wrong facts, or a tampered snapshot object,
/// would). Returns its id.
fn inject_etcd_snapshot(fx: &Fixture, db: &[u8], facts: Vec<(String, String)>) -> String {
    use cairn_format::index::IndexRecord;
    use cairn_format::pack::PackKind;
    use cairn_format::snapshot::{Snapshot, SnapshotStats, SourceKind};
    let c = Crafter::new(fx);
    let name = "snapshot_2026-11-21_030000.db";
    // Page-sized blobs, as cairn stores etcd databases.
    let blobs: Vec<Vec<u8>> = db.chunks(4096).map(<[u8]>::to_vec).collect();
    let ids = blobs.iter().map(|b| c.blob_id(b)).collect();
    let mut node = file_node(name.as_bytes(), ids, db.len() as u64);
    node.mode = 0o600;
    let root = raw_tree(vec![node]);
    let mut index = IndexRecord::default();
    index
        .packs
        .push(c.put_pack(PackKind::Tree, std::slice::from_ref(&root)));
    index.packs.push(c.put_pack(PackKind::Data, &blobs));
    c.put_meta("index", &index.encode());
    let mut facts = facts;
    facts.push(("etcd.file".into(), name.into()));
    let snap = Snapshot {
        time_ns: 1_763_694_000_000_000_000,
        host: "master-0".into(),
        username: "root".into(),
        source: SourceKind::Etcd,
        paths: vec![format!("/{name}")],
        tags: Vec::new(),
        tree: c.blob_id(&root),
        parent: None,
        stats: SnapshotStats {
            files: 1,
            bytes: db.len() as u64,
            ..SnapshotStats::default()
        },
        program: "crafted".into(),
        facts,
    };
    c.put_meta("snapshots", &snap.encode()).to_hex()
}

fn facts_of(status: &etcd::Status, size: usize, sha: &str) -> Vec<(String, String)> {
    vec![
        ("etcd.source".into(), "file crafted".into()),
        ("etcd.revision".into(), status.revision.to_string()),
        ("etcd.total_keys".into(), status.total_keys.to_string()),
        ("etcd.total_size".into(), status.total_size.to_string()),
        ("etcd.hash".into(), status.hash.clone()),
        ("etcd.sha256".into(), sha.into()),
        ("etcd.size".into(), size.to_string()),
    ]
}

#[test]
fn restore_rechecks_the_written_database_against_the_recorded_facts() {
    if !etcd::available("restore_rechecks_the_written_database_against_the_recorded_facts") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 200);
    let fx = Fixture::new();
    let file = fx.path("good.db");
    e.snapshot_save(&file);
    let good = fs::read(&file).unwrap();
    let status = etcd::snapshot_status(&file);

    // The control: correct facts restore and verify.
    let id = inject_etcd_snapshot(&fx, &good, facts_of(&status, good.len(), "verified"));
    let out = fx.restore(&id, &fx.path("ok"), &["--layout", "cluster-backup"]);
    out.ok();
    assert!(out.stdout.contains("sha256 trailer"), "{out}");
    assert!(out.stdout.contains("etcd.revision"), "{out}");
    // The tree layout checks the database as it is written, too.
    let out = fx.restore(&id, &fx.path("ok-tree"), &[]);
    out.ok();
    assert!(out.stdout.contains("sha256 trailer"), "{out}");
    assert!(out.stdout.contains("etcd.hash"), "{out}");

    // A database whose trailer does not match, recorded as verified.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x20;
    let id = inject_etcd_snapshot(&fx, &bad, facts_of(&status, n, "verified"));
    fx.restore(&id, &fx.path("t1"), &["--layout", "cluster-backup"])
        .code_is(1)
        .stderr_has(&["sha256", "do not use it"]);

    // The right bytes, but the backup recorded another revision / hash.
    let mut wrong = status.clone();
    wrong.revision += 1;
    let id = inject_etcd_snapshot(&fx, &good, facts_of(&wrong, n, "verified"));
    fx.restore(&id, &fx.path("t2"), &["--layout", "cluster-backup"])
        .code_is(1)
        .stderr_has(&["etcd.revision", &wrong.revision.to_string()]);
    let mut wrong = status.clone();
    wrong.hash = "00000000".into();
    let id = inject_etcd_snapshot(&fx, &good, facts_of(&wrong, n, "verified"));
    fx.restore(&id, &fx.path("t3"), &["--layout", "cluster-backup"])
        .code_is(1)
        .stderr_has(&["etcd.hash"]);
    // Another recorded size.
    let id = inject_etcd_snapshot(&fx, &good, facts_of(&status, n + 4096, "verified"));
    fx.restore(&id, &fx.path("t4"), &["--layout", "cluster-backup"])
        .code_is(1)
        .stderr_has(&[&(n + 4096).to_string()]);
    // The tree layout re-checks too.
    let id = inject_etcd_snapshot(&fx, &bad, facts_of(&status, n, "verified"));
    fx.restore(&id, &fx.path("t5"), &[])
        .code_is(1)
        .stderr_has(&["sha256"]);
    let left = names_in(&fx.path("t5"));
    assert!(
        left.iter().all(|n| n.ends_with(".failed-verification")) && left.len() == 1,
        "the tree layout sets a failing database aside: {left:?}"
    );
}

#[test]
fn database_failing_verification_is_not_left_under_its_final_name() {
    if !etcd::available("database_failing_verification_is_not_left_under_its_final_name") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 50);
    let fx = Fixture::new();
    let file = fx.path("good.db");
    e.snapshot_save(&file);
    let mut bad = fs::read(&file).unwrap();
    let n = bad.len();
    bad[n - 5] ^= 0x20;
    let status = etcd::snapshot_status(&file);
    let id = inject_etcd_snapshot(&fx, &bad, facts_of(&status, n, "verified"));
    let target = fx.path("t");
    fx.restore(&id, &target, &["--layout", "cluster-backup"])
        .code_is(1);
    let left = if target.exists() {
        names_in(&target)
    } else {
        Vec::new()
    };
    assert!(
        left.iter().all(|n| !n.ends_with(".db")),
        "a database that failed verification is in the target: {left:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Static pod resources
// ---------------------------------------------------------------------------------------------

/// A fake /etc/kubernetes/static-pod-resources below `root`: several revisions per component,
/// 0600 secrets, symlinks, and directories that are not revisions. Returns the directories
/// cluster-backup.sh would take, in its order.
fn fake_static_pods(root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::symlink;
    let revs: [(&str, &[u32]); 4] = [
        ("kube-apiserver", &[2, 9, 10]),
        ("kube-controller-manager", &[3, 4]),
        ("kube-scheduler", &[5]),
        ("etcd", &[1, 2]),
    ];
    let mut seed = 1000;
    for (component, ns) in revs {
        for n in ns {
            let d = root.join(format!("{component}-pod-{n}"));
            seed += 1;
            write_file(
                &d.join(format!("{component}-pod.yaml")),
                &text_bytes(seed, 3000 + *n as usize),
            );
            write_file(
                &d.join("configmaps/config/config.yaml"),
                &text_bytes(seed + 100, 2000),
            );
            write_file(
                &d.join("configmaps/revision-status/revision"),
                n.to_string().as_bytes(),
            );
            let key = d.join(format!("secrets/{component}-certs/tls.key"));
            write_file(&key, &random_bytes(seed + 200, 1679));
            chmod(&key, 0o600);
            let crt = d.join(format!("secrets/{component}-certs/tls.crt"));
            write_file(&crt, &text_bytes(seed + 300, 1200));
            chmod(&crt, 0o600);
            chmod(&d.join("secrets"), 0o700);
            symlink(
                "../config/config.yaml",
                d.join("configmaps/revision-status/config"),
            )
            .unwrap();
        }
    }
    fs::create_dir_all(root.join("etcd-certs/secrets")).unwrap();
    write_file(&root.join("kube-apiserver-certs/ca.crt"), b"not a revision");
    write_file(
        &root.join("kube-scheduler-pod-99"),
        b"a file, not a revision directory",
    );
    fs::create_dir_all(root.join("etcd-pod-x")).unwrap();
    stamp_mtimes(root, 1_700_000_000);
    [
        "kube-apiserver-pod-10",
        "kube-controller-manager-pod-4",
        "kube-scheduler-pod-5",
        "etcd-pod-2",
    ]
    .iter()
    .map(|n| root.join(n))
    .collect()
}

const REVISIONS: &str = "kube-apiserver=10,kube-controller-manager=4,kube-scheduler=5,etcd=2";

#[test]
fn static_pods_backup_takes_the_latest_revision_of_each_component() {
    let fx = Fixture::new();
    let root = fx.dir("static-pod-resources");
    let chosen = fake_static_pods(&root);
    let out = fx.wk(&["--json", "backup", "static-pods", "--dir", s(&root)]);
    out.ok();
    let report = out.json();
    let id = Fixture::snap_id(&report);
    assert_eq!(
        report["facts"]["static_pods.revisions"], REVISIONS,
        "{report}"
    );
    let snap = snapshots(&fx).into_iter().find(|x| x["id"] == id).unwrap();
    assert_eq!(snap["source"], "static-pods");
    assert_eq!(snap["facts"]["static_pods.revisions"], REVISIONS);
    let paths: Vec<&str> = snap["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let want: Vec<&str> = chosen.iter().map(|p| s(p)).collect();
    assert_eq!(
        paths.iter().collect::<BTreeSet<_>>(),
        want.iter().collect::<BTreeSet<_>>()
    );
    // `ls` shows only the chosen revision directories below the resources directory.
    let out = fx.wk(&["--json", "ls", &id, s(&root)]);
    out.ok();
    let below: BTreeSet<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| {
            let p = n["path"].as_str()?;
            let rest = p.strip_prefix(s(&root))?.strip_prefix('/')?;
            Some(rest.split('/').next()?.to_string())
        })
        .collect();
    let want: BTreeSet<String> = chosen
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(below, want);
    // Restored as a tree, byte- and metadata-exact.
    let target = fx.path("restored");
    fx.restore(&id, &target, &[]).ok();
    for d in &chosen {
        assert_trees_equal(d, &Fixture::restored(&target, d));
    }
    assert!(!Fixture::restored(&target, &root.join("kube-apiserver-pod-9")).exists());
}

// ---------------------------------------------------------------------------------------------
// 9. One cluster backup, restored for cluster-restore.sh
// ---------------------------------------------------------------------------------------------

/// `tar tzf` of an archive, as a set.
fn tar_names(archive: &Path) -> BTreeSet<String> {
    String::from_utf8(sh("tar", &["tzf", s(archive)]))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cluster_backup_layout_matches_cluster_backup_sh() {
    if !etcd::available("cluster_backup_layout_matches_cluster_backup_sh") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 500);
    let fx = Fixture::new();
    let root = fx.dir("static-pod-resources");
    let chosen = fake_static_pods(&root);

    let out = wk(
        &fx,
        &["--json", "backup", "cluster", "--static-pods-dir", s(&root)],
        &e.cairn_args(),
    );
    out.ok();
    let report = out.json();
    let id = Fixture::snap_id(&report);
    let facts = &report["facts"];
    assert_eq!(report["source"], "cluster");
    assert_eq!(facts["static_pods.revisions"], REVISIONS, "{facts}");
    assert_eq!(facts["etcd.sha256"], "verified", "{facts}");
    assert_eq!(facts["cluster.version"], etcd::CLUSTER_VERSION, "{facts}");
    let revision = e.revision();

    let dir = fx.path("backup");
    let names = restore_cluster_backup(&fx, &id, &dir);
    assert_eq!(names.len(), 2, "{names:?}");
    let (db, archive) = if names[0].ends_with(".db") {
        (&names[0], &names[1])
    } else {
        (&names[1], &names[0])
    };
    assert!(db.starts_with("snapshot_") && archive.starts_with("static_kuberesources_"));
    assert_eq!(stamp_of(db), stamp_of(archive), "{names:?}");
    assert_stamp_format(stamp_of(db));
    assert_eq!(facts["etcd.file"], db.as_str());
    let db = dir.join(db);
    let archive = dir.join(archive);
    assert!(has_valid_trailer(&db));
    assert_eq!(etcd::snapshot_status(&db).revision as i64, revision);

    // What cluster-backup.sh makes of the same directories: GNU tar, absolute paths.
    let theirs = fx.path("theirs.tar.gz");
    let mut args = vec!["czf", s(&theirs)];
    args.extend(chosen.iter().map(|p| s(p)));
    let status = Command::new("tar")
        .args(&args)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let ours_names = tar_names(&archive);
    let theirs_names = tar_names(&theirs);
    assert_eq!(
        ours_names,
        theirs_names,
        "archive listings differ: only in cairn's {:?}, only in GNU tar's {:?}",
        ours_names.difference(&theirs_names).collect::<Vec<_>>(),
        theirs_names.difference(&ours_names).collect::<Vec<_>>()
    );
    assert!(ours_names.iter().all(|n| !n.starts_with('/')));

    // Extracted, both give the same trees (contents, modes, owners, times, symlinks).
    let x_ours = fx.dir("x-ours");
    let x_theirs = fx.dir("x-theirs");
    sh("tar", &["xzf", s(&archive), "-C", s(&x_ours)]);
    sh("tar", &["xzf", s(&theirs), "-C", s(&x_theirs)]);
    for d in &chosen {
        assert_trees_equal(
            &Fixture::restored(&x_theirs, d),
            &Fixture::restored(&x_ours, d),
        );
    }
    // And that tree is the source (tar keeps whole seconds).
    for d in &chosen {
        let src = scan_tree(d);
        let got = scan_tree(&Fixture::restored(&x_ours, d));
        assert_eq!(
            src.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>(),
            "{}",
            d.display()
        );
        for (p, a) in &src {
            let b = &got[p];
            let key = |e: &EntryInfo| {
                (
                    e.kind,
                    e.mode,
                    e.uid,
                    e.gid,
                    e.size,
                    e.content.clone(),
                    e.target.clone(),
                    e.mtime_ns.div_euclid(1_000_000_000),
                )
            };
            assert_eq!(
                key(a),
                key(b),
                "{}/{}",
                d.display(),
                String::from_utf8_lossy(p)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Cluster version
// ---------------------------------------------------------------------------------------------

#[test]
fn restore_warns_when_the_cluster_runs_another_z_stream() {
    if !etcd::available("restore_warns_when_the_cluster_runs_another_z_stream") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 20);
    let fx = Fixture::new();
    let id = Fixture::snap_id(&live_backup(&fx, &e));
    assert_eq!(
        listed_facts(&fx, &id)["cluster.version"],
        etcd::CLUSTER_VERSION
    );
    let out = fx.restore(
        &id,
        &fx.path("a"),
        &["--layout", "cluster-backup", "--cluster-version", "4.14.13"],
    );
    out.ok()
        .stderr_has(&["warning", "z-stream", "4.14.12", "4.14.13"]);
    let out = fx.restore(
        &id,
        &fx.path("b"),
        &["--layout", "cluster-backup", "--cluster-version", "4.15.12"],
    );
    out.ok().stderr_has(&["warning", "z-stream", "4.15.12"]);
    let out = fx.restore(
        &id,
        &fx.path("c"),
        &["--layout", "cluster-backup", "--cluster-version", "4.14.12"],
    );
    out.ok();
    assert!(
        !out.stderr.to_lowercase().contains("warning"),
        "no warning expected for the same version\n{out}"
    );
    // An explicit --cluster-version at backup time wins over the object.
    let out = wk(
        &fx,
        &["--json", "backup", "etcd", "--cluster-version", "4.15.3"],
        &e.cairn_args(),
    );
    out.ok();
    assert_eq!(out.json()["facts"]["cluster.version"], "4.15.3");
}

// ---------------------------------------------------------------------------------------------
// 11. Day-to-day deduplication
// ---------------------------------------------------------------------------------------------

#[test]
fn second_day_with_two_percent_of_keys_changed_stores_little() {
    if !etcd::available("second_day_with_two_percent_of_keys_changed_stores_little") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, KEYS);
    let fx = Fixture::new();
    let day1 = live_backup(&fx, &e);
    let changed = etcd::update_keys(&e, KEYS, 50, 2);
    assert_eq!(changed, KEYS / 50);
    let day2 = live_backup(&fx, &e);
    let size1 = day1["bytes"].as_u64().unwrap();
    let size2 = day2["bytes"].as_u64().unwrap();
    let added1 = day1["added_bytes"].as_u64().unwrap();
    let added2 = day2["added_bytes"].as_u64().unwrap();
    eprintln!("day 1: {size1} bytes, {added1} added; day 2: {size2} bytes, {added2} added");
    // The first day really stores the data (values compress about 2×, not 20×).
    assert!(added1 > size1 / 4, "day 1 stored only {added1} of {size1}");
    assert!(
        added2 < size2 / 4,
        "day 2 stored {added2} bytes of a {size2}-byte snapshot after {changed} changed keys"
    );
    assert!(added2 < added1 / 3, "day 2 {added2} vs day 1 {added1}");
    // And day 2 restores to what etcd holds now.
    let db = restored_db(&fx, &Fixture::snap_id(&day2), &fx.path("out"));
    let saved = fx.path("now.db");
    e.snapshot_save(&saved);
    let (a, b) = (etcd::snapshot_status(&db), etcd::snapshot_status(&saved));
    assert_eq!((a.revision, &a.hash), (b.revision, &b.hash));
}
