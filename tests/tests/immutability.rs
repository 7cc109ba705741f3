//! A compromised host must not be able to destroy backups (issue 12), on a real S3 server:
//!
//! * backups and `copy` need storage credentials that can create and read objects, never
//!   delete or overwrite them (a [`WriteOnceProxy`] in front of moto refuses the rest, as
//!   AWS does with the README's backup-host policy); prune with full credentials then removes
//!   the lease objects the writers left;
//! * S3 Object Lock (moto, a bucket created with Object Lock): `init --object-lock-days`
//!   refuses a bucket without it; every object gets a retention, a locked version cannot be
//!   deleted, prune extends the retention of what it keeps, `check` names objects protected
//!   for less than the policy says;
//! * `--as-of`: after an attack (snapshots deleted, a pack overwritten with garbage) the
//!   repository as it was before is listed, restored byte-exact and copied into a clean
//!   repository whose `check --read-data` is clean.

use cairn_e2e::repo_objects::*;
use cairn_e2e::s3;
use cairn_e2e::versions::*;
use cairn_e2e::worm::WriteOnceProxy;
use cairn_e2e::*;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

/// Run cairn with `args` and the fixture's environment, but through `proxy`, with `extra`.
fn via(fx: &Fixture, proxy: &WriteOnceProxy, args: &[&str], extra: &[(&str, &OsStr)]) -> Output {
    let penv = proxy.env();
    let mut env = env_refs(&penv);
    env.extend_from_slice(extra);
    fx.run_env(args, &env)
}

#[test]
fn the_write_once_proxy_refuses_deletes_and_overwrites() {
    let server = s3::shared();
    let bucket = s3::fresh_bucket("worm");
    let proxy = WriteOnceProxy::start(server.addr());
    let at = |k: &str| format!("/{bucket}/{k}");
    let put = |k: &str, body: &[u8]| s3::http(proxy.addr(), "PUT", &at(k), body).unwrap();
    // Unconditional PUT: refused, nothing stored.
    assert_eq!(put("a", b"one").status, 403);
    assert_eq!(server.get(&bucket, "a"), None);
    // Stored directly, then neither overwritten nor deleted through the proxy.
    server.put(&bucket, "a", b"one");
    assert_eq!(put("a", b"two").status, 403);
    let del = s3::http(proxy.addr(), "DELETE", &at("a"), b"").unwrap();
    assert_eq!(del.status, 403);
    assert_eq!(server.get(&bucket, "a").as_deref(), Some(&b"one"[..]));
    // Reads pass.
    let got = s3::http(proxy.addr(), "GET", &at("a"), b"").unwrap();
    assert_eq!((got.status, got.body), (200, b"one".to_vec()));
    assert_eq!(proxy.log().refused.len(), 3, "{:?}", proxy.log());
}

#[test]
fn backup_and_copy_need_no_delete_or_overwrite_permission() {
    let fx = Fixture::on(Backend::S3);
    let proxy = WriteOnceProxy::start(s3::shared().addr());
    // A lease renewed every second: a backup of a few seconds writes several lease objects.
    let short: &[(&str, &OsStr)] = &[("CAIRN_LEASE_EXPIRY", OsStr::new("12"))];
    let src = fx.path("src");
    for i in 0..6u64 {
        write_file(
            &src.join(format!("f{i}.bin")),
            &random_bytes(100 + i, 700_000),
        );
    }
    let wk = |args: &[&str]| via(&fx, &proxy, &fx.wk_args(args), short);
    let out = wk(&["--json", "backup", s(&src)]);
    out.ok();
    let s1 = Fixture::snap_id(&out.json());
    write_file(&src.join("f0.bin"), &random_bytes(999, 700_000));
    let out = wk(&["--json", "backup", s(&src)]);
    out.ok();
    let s2 = Fixture::snap_id(&out.json());

    let log = proxy.log();
    assert!(log.refused.is_empty(), "refused: {:?}", log.refused);
    assert!(
        log.conditional_puts >= 10,
        "every object is a conditional create: {log:?}"
    );
    let locks = fx.store.names("locks");
    assert!(unreleased_leases(&fx.store).is_empty(), "{locks:?}");
    assert_eq!(
        locks.iter().filter(|n| n.ends_with(".end")).count(),
        2,
        "each backup released its lease with a .end object: {locks:?}"
    );
    assert!(
        locks.iter().any(|n| n.ends_with(".1")),
        "renewals are new objects: {locks:?}"
    );

    // copy into a repository made like this one, with the same credentials.
    let dst = fx.fresh_store("dst");
    let dloc = dst.location();
    via(
        &fx,
        &proxy,
        &[
            "-r",
            &dloc,
            "-k",
            s(&fx.write_key),
            "init",
            "--like",
            s(&fx.repo),
        ],
        &[],
    )
    .ok();
    via(
        &fx,
        &proxy,
        &fx.wk_args(&["--json", "copy", "--to", &dloc]),
        short,
    )
    .ok();
    let log = proxy.log();
    assert!(log.refused.is_empty(), "refused: {:?}", log.refused);
    assert!(
        unreleased_leases(&dst).is_empty(),
        "{:?}",
        dst.names("locks")
    );
    assert!(!dst.names("locks").is_empty());

    // Removing history through these credentials is refused by the storage, not only by
    // cairn: forget with the identity.
    let out = via(
        &fx,
        &proxy,
        &fx.id_args(&["forget", "--keep-last", "1", "--group-by", ""]),
        &[],
    );
    out.failed();
    out.stderr_has(&["snapshots/"]);
    assert!(!proxy.log().refused.is_empty());
    assert_eq!(snapshot_ids(&fx.store).len(), 2, "a snapshot was deleted");

    // Maintenance (full credentials, the server directly) removes the released leases.
    for loc in [s(&fx.repo), &dloc] {
        fx.run(&["-r", loc, "-i", s(&fx.identity), "prune"]).ok();
    }
    assert_eq!(fx.store.names("locks"), Vec::<String>::new());
    assert_eq!(dst.names("locks"), Vec::<String>::new());
    fx.run(&["-r", &dloc, "-i", s(&fx.identity), "check", "--read-data"])
        .ok();
    assert_eq!(snapshot_ids(&dst), [s1, s2.clone()].into_iter().collect());
    assert_restores(&fx, &dloc, &s2, &src, "from the copy");
}

/// A bucket created with Object Lock enabled (and so versioning) on the shared server.
fn locked_bucket() -> String {
    let bucket = format!("{}-l", s3::fresh_bucket("lock"));
    let r = s3::http_with(
        s3::shared().addr(),
        "PUT",
        &format!("/{bucket}"),
        &[("x-amz-bucket-object-lock-enabled", "true")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    bucket
}

/// A fixture whose repository is `s3://<locked bucket>/repo`, made with `init_args`, with its
/// own write key.
fn locked_fixture(init_args: &[&str]) -> Fixture {
    let mut fx = Fixture::on(Backend::S3);
    fx.store = Store::S3 {
        bucket: locked_bucket(),
        prefix: "repo".into(),
    };
    fx.repo = PathBuf::from(fx.store.location());
    fx.write_key = fx.path("locked.key");
    let recipient = fx.recipient.clone();
    let mut a = vec!["-r", s(&fx.repo), "init", "--recipient", &recipient];
    a.extend_from_slice(init_args);
    fx.run(&a).ok();
    fx.id(&["key", "write-key", "-o", s(&fx.write_key)]).ok();
    fx
}

/// `(key, version id, is latest)` of every version below `prefix` in `bucket`, newest first
/// per key.
fn versions(bucket: &str, prefix: &str) -> Vec<(String, String, bool)> {
    let r = s3::http(
        s3::shared().addr(),
        "GET",
        &format!("/{bucket}?versions&prefix={prefix}"),
        b"",
    )
    .unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let field = |item: &str, tag: &str| {
        let open = format!("<{tag}>");
        item.split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")))
            .map(|(v, _)| v.to_string())
            .unwrap_or_default()
    };
    text.split("<Version>")
        .skip(1)
        .map(|item| {
            (
                field(item, "Key"),
                field(item, "VersionId"),
                field(item, "IsLatest") == "true",
            )
        })
        .collect()
}

/// The retain-until date of the current version of `key`, if it has one (from a HEAD: moto
/// has no GetObjectRetention).
fn retain_until(bucket: &str, key: &str) -> Option<String> {
    let r = s3::http(
        s3::shared().addr(),
        "HEAD",
        &format!("/{bucket}/{key}"),
        b"",
    )
    .unwrap();
    r.headers
        .iter()
        .find(|(k, _)| k == "x-amz-object-lock-retain-until-date")
        .map(|(_, v)| v.clone())
}

#[test]
fn object_lock_protects_every_object_and_prune_extends_it() {
    // A bucket without Object Lock is refused, saying how to make one.
    let fx = Fixture::on(Backend::S3);
    let plain = fx.fresh_store("plain");
    let out = fx.run(&[
        "-r",
        &plain.location(),
        "init",
        "--recipient",
        &fx.recipient,
        "--object-lock-days",
        "2",
    ]);
    out.failed();
    out.stderr_has(&["Object Lock", "--object-lock-enabled-for-bucket"]);
    assert!(plain.names("").is_empty(), "{:?}", plain.names(""));

    let fx = locked_fixture(&["--object-lock-days", "2"]);
    let Store::S3 { bucket, .. } = fx.store.clone() else {
        unreachable!()
    };
    let src = fx.path("src");
    write_file(&src.join("a.bin"), &random_bytes(1, 300_000));
    let s1 = Fixture::snap_id(&fx.backup(&[&src]));
    let stamp = |days: i64| {
        (chrono::Utc::now() + chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (tomorrow, in3days) = (stamp(1), stamp(3));
    // Every object but leases carries a retention of two days.
    for name in fx.store.names("") {
        let until = retain_until(&bucket, &format!("repo/{name}"));
        if name.starts_with("locks/") {
            assert_eq!(until, None, "{name}");
            continue;
        }
        let until = until.unwrap_or_else(|| panic!("{name} has no retention"));
        assert!(
            until > tomorrow && until < in3days,
            "{name} retained until {until}"
        );
    }
    // A locked version cannot be deleted, even with full storage credentials.
    let key = format!("repo/snapshots/{s1}");
    let (_, version, _) = versions(&bucket, &key).remove(0);
    let r = s3::http(
        s3::shared().addr(),
        "DELETE",
        &format!("/{bucket}/{key}?versionId={version}"),
        b"",
    )
    .unwrap();
    assert!(r.status == 403 || r.status == 400, "{r:?}");
    assert!(fx.store.exists(&format!("snapshots/{s1}")));

    // Prune extends the retention of what it keeps.
    std::thread::sleep(Duration::from_millis(1100));
    let before = retain_until(&bucket, &key).unwrap();
    let out = fx.id(&["--json", "prune"]);
    out.ok();
    let r = out.json();
    assert_eq!(r["object_lock_days"], 2, "{r:#}");
    assert!(num(&r, "retention_extended") >= 4, "{r:#}");
    let after = retain_until(&bucket, &key).unwrap();
    assert!(after > before, "{before} → {after}");

    // forget --prune of the first snapshot: gone from the repository's view, but its locked
    // version (and its packs') stays, and --as-of reads it.
    write_file(&src.join("a.bin"), &random_bytes(2, 300_000));
    let s2 = Fixture::snap_id(&fx.backup(&[&src]));
    std::thread::sleep(Duration::from_millis(1100));
    let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::thread::sleep(Duration::from_millis(1100));
    fx.id(&["forget", "--keep-last", "1", "--group-by", "", "--prune"])
        .ok();
    assert_eq!(snapshot_ids(&fx.store), [s2.clone()].into_iter().collect());
    assert!(
        !versions(&bucket, &key).is_empty(),
        "the locked version of {key} was deleted"
    );
    let out = fx.id(&["--json", "snapshots", "--as-of", &t]);
    out.ok();
    assert!(
        out.stdout.contains(&s1) && out.stdout.contains(&s2),
        "{out}"
    );

    // check: clean, and says every object is protected; an object rewritten without a lock
    // (a writer that ignores the policy) is named.
    let out = fx.id(&["--json", "check"]);
    out.ok();
    let notes = out.json()["notes"].to_string();
    assert!(notes.contains("protected at least 2 days"), "{notes}");
    let index = fx.store.names("index").remove(0);
    let bytes = fx.store.read(&index).unwrap();
    s3::shared().put(&bucket, &format!("repo/{index}"), &bytes);
    let out = fx.id(&["--json", "check"]);
    out.ok();
    let notes = out.json()["notes"].to_string();
    assert!(
        notes.contains(&index) && notes.contains("no retention"),
        "{notes}"
    );
}

#[test]
fn as_of_reads_the_repository_from_before_an_attack() {
    let fx = locked_fixture(&[]);
    let Store::S3 { bucket, .. } = fx.store.clone() else {
        unreachable!()
    };
    let src = fx.path("src");
    for i in 0..4u64 {
        write_file(&src.join(format!("f{i}")), &random_bytes(10 + i, 200_000));
    }
    // Large enough to be restored through ranged reads of its packs' versions.
    write_file(&src.join("large"), &random_bytes(20, 3_000_000));
    let s1 = Fixture::snap_id(&fx.backup(&[&src]));
    write_file(&src.join("f0"), &random_bytes(99, 200_000));
    let s2 = Fixture::snap_id(&fx.backup(&[&src]));
    std::thread::sleep(Duration::from_millis(1100));
    let before_attack = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::thread::sleep(Duration::from_millis(1100));

    // The attack, with storage credentials: snapshots deleted, every data pack overwritten.
    for snap in [&s1, &s2] {
        s3::shared().delete(&bucket, &format!("repo/snapshots/{snap}"));
    }
    for pack in fx.store.names("data") {
        s3::shared().put(&bucket, &format!("repo/{pack}"), b"garbage");
    }
    let now = fx.id(&["--json", "snapshots"]);
    now.ok();
    assert_eq!(now.json().as_array().map(Vec::len), Some(0), "{now}");

    // As of before the attack: both snapshots, a byte-exact restore.
    let asof = ["--as-of", before_attack.as_str()];
    let mut a = vec!["--json", "snapshots"];
    a.extend_from_slice(&asof);
    let then = fx.id(&a);
    then.ok();
    let listed = then.stdout.clone();
    assert!(listed.contains(&s1) && listed.contains(&s2), "{then}");
    let target = fx.path("restored");
    fx.restore(&s2, &target, &asof).ok();
    let diff = compare_trees(&src, &Fixture::restored(&target, &src));
    assert!(diff.is_empty(), "{diff:?}");
    let mut a = vec!["check", "--read-data"];
    a.extend_from_slice(&asof);
    fx.id(&a).ok();
    // Writes through it are refused.
    let mut a = vec!["backup", s(&src)];
    a.extend_from_slice(&asof);
    fx.id(&a).failed().stderr_has(&["read-only"]);

    // Copied into a clean repository, which checks clean.
    let clean = fx.fresh_store("clean");
    let cloc = clean.location();
    fx.run(&[
        "-r",
        &cloc,
        "-i",
        s(&fx.identity),
        "init",
        "--like",
        s(&fx.repo),
        "--as-of",
        &before_attack,
    ])
    .ok();
    let mut a = vec!["copy", "--to", &cloc];
    a.extend_from_slice(&asof);
    fx.id(&a).ok();
    fx.run(&["-r", &cloc, "-i", s(&fx.identity), "check", "--read-data"])
        .ok();
    assert_eq!(snapshot_ids(&clean), [s1, s2.clone()].into_iter().collect());
    assert_restores(&fx, &cloc, &s2, &src, "from the clean copy");
}
