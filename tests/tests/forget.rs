//! `cairn forget` end to end: dry runs change nothing, keep rules apply per group, a write key
//! can forget, `--max-count` holds exactly in each group, and `--max-size --prune` leaves a
//! repository no larger than asked whose newest snapshot restores; on a local directory and on
//! S3 alike.

use cairn_e2e::*;
use serde_json::Value;
use std::fs;
use std::path::PathBuf;

/// Snapshot ids and hosts, via `snapshots --json`.
fn snaps(fx: &Fixture) -> Vec<(String, String)> {
    let v = fx.id(&["--json", "snapshots"]).ok().json();
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["host"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Two hosts, three backups each (tags t0..t2); the source changes every time.
fn two_hosts(backend: Backend) -> (Fixture, PathBuf) {
    let fx = Fixture::on(backend);
    let src = fx.dir("src");
    for i in 0..3u64 {
        for host in ["alpha", "beta"] {
            fs::write(src.join("f"), format!("{host} {i}")).unwrap();
            let tag = format!("t{i}");
            fx.wk(&["backup", "--host", host, "--tag", &tag, s(&src)])
                .ok();
        }
    }
    (fx, src)
}

fn keep_last_dry_run_then_real_with_write_key(backend: Backend) {
    let (fx, _src) = two_hosts(backend);
    assert_eq!(snaps(&fx).len(), 6);
    let v = fx
        .wk(&["--json", "forget", "--keep-last", "2", "--dry-run"])
        .ok()
        .json();
    let list = v["snapshots"].as_array().expect("array");
    assert_eq!(list.len(), 6);
    let kept: Vec<&Value> = list.iter().filter(|d| d["keep"] == true).collect();
    assert_eq!(kept.len(), 4, "{v}");
    for d in &kept {
        assert_eq!(d["reasons"], serde_json::json!(["last"]));
        assert_ne!(d["tags"], serde_json::json!(["t0"]));
    }
    assert_eq!(snaps(&fx).len(), 6, "dry run deleted something");

    fx.wk(&["forget", "--keep-last", "2"]).ok();
    let left = snaps(&fx);
    assert!(left
        .iter()
        .all(|(id, _)| kept.iter().any(|d| d["id"] == id.as_str())));
    assert_eq!(left.len(), 4);
    for host in ["alpha", "beta"] {
        assert_eq!(left.iter().filter(|(_, h)| h == host).count(), 2);
    }
    // Filters: only alpha's are considered.
    fx.id(&["forget", "--keep-last", "1", "--host", "alpha"])
        .ok();
    let left = snaps(&fx);
    assert_eq!(left.iter().filter(|(_, h)| h == "alpha").count(), 1);
    assert_eq!(left.iter().filter(|(_, h)| h == "beta").count(), 2);
}
backend_tests!(keep_last_dry_run_then_real_with_write_key);

fn max_count_is_exact_and_keeps_the_newest(backend: Backend) {
    let (fx, _src) = two_hosts(backend);
    let all = snaps(&fx);
    // Per group: the newest of each host.
    fx.id(&["forget", "--keep-last", "3", "--max-count", "1"])
        .ok();
    assert_eq!(snaps(&fx), all[4..].to_vec());
    // Grouped by nothing: the newest of all.
    fx.id(&["forget", "--max-count", "1", "--group-by", ""])
        .ok();
    assert_eq!(snaps(&fx), all[5..].to_vec());
}
backend_tests!(max_count_is_exact_and_keeps_the_newest);

#[test]
fn bad_arguments_are_usage_errors() {
    let (fx, _src) = two_hosts(Backend::Local);
    // No rule at all, or --max-size without the prune that frees the space.
    fx.id(&["forget"]).code_is(2);
    fx.id(&["forget", "--max-size", "1G"]).code_is(2);
    fx.id(&["forget", "--keep-within", "7x"]).code_is(2);
    fx.id(&["forget", "--timezone", "Mars/Olympus", "--keep-daily", "1"])
        .code_is(2);
    fx.id(&["forget", "--group-by", "colour"]).code_is(2);
    assert_eq!(snaps(&fx).len(), 6);
}

fn max_size_with_prune_fits_and_newest_restores(backend: Backend) {
    max_size_case(backend, false);
}
backend_tests!(max_size_with_prune_fits_and_newest_restores);

fn max_size_with_prune_works_with_a_write_key(backend: Backend) {
    max_size_case(backend, true);
}
backend_tests!(max_size_with_prune_works_with_a_write_key);

/// Four backups of 1 MiB each: a `--max-size` nothing fits is refused; a limit 1.5 MiB below
/// the total leaves the repository within it and the newest snapshot restores.
fn max_size_case(backend: Backend, write_key: bool) {
    let fx = Fixture::on(backend);
    let forget = |args: &[&str]| if write_key { fx.wk(args) } else { fx.id(args) };
    let src = fx.dir("src");
    let mut last = Vec::new();
    for i in 0..4u64 {
        last = random_bytes(i + 1, 1 << 20);
        fs::write(src.join("data"), &last).unwrap();
        fx.id(&["backup", s(&src)]).ok();
    }
    let before = fx.store.bytes();
    // Far too small: refused, nothing removed.
    forget(&["forget", "--max-size", "100K", "--prune"])
        .failed()
        .stderr_has(&["does not fit", "nothing removed"]);
    assert_eq!(snaps(&fx).len(), 4);

    let limit = before - (3 << 20) / 2;
    let limit_arg = limit.to_string();
    forget(&["forget", "--max-size", &limit_arg, "--prune"]).ok();
    let after = fx.store.bytes();
    assert!(after <= limit, "{after} > {limit}");
    let left = snaps(&fx).len();
    assert!((1..4).contains(&left), "{left} snapshots left");

    let target = fx.path("restored");
    fx.id(&["restore", "latest", "--target", s(&target)]).ok();
    let file = Fixture::restored(&target, &src).join("data");
    assert_eq!(fs::read(file).unwrap(), last);
}

fn forget_with_prune_frees_the_space_and_reports_both(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.dir("src");
    for i in 0..3u64 {
        fs::write(src.join("data"), random_bytes(i + 10, 1 << 20)).unwrap();
        fx.id(&["backup", s(&src)]).ok();
    }
    let before = fx.store.bytes();
    let v = fx
        .id(&["--json", "forget", "--keep-last", "1", "--prune"])
        .ok()
        .json();
    assert_eq!(v["deleted"], 2, "{v}");
    assert!(v["prune"]["packs_deleted"].as_u64().unwrap() >= 2, "{v}");
    let after = fx.store.bytes();
    assert!(after < before - (3 << 20) / 2, "{after} vs {before}");
    fx.id(&["check", "--read-data"]).ok();
}
backend_tests!(forget_with_prune_frees_the_space_and_reports_both);

/// Every etcd backup names its own timestamped snapshot file; they still form one group, so
/// `--keep-last` keeps the newest ones instead of every snapshot.
#[test]
fn etcd_snapshots_are_one_group_whatever_their_file_names() {
    if !etcd::available("etcd_snapshots_are_one_group_whatever_their_file_names") {
        return;
    }
    let fx = Fixture::new();
    let e = etcd::Etcd::start();
    etcd::load_keyspace(&e, 50);
    let file = fx.path("snapshot.db");
    let mut ids = Vec::new();
    for generation in 1..=3 {
        etcd::update_keys(&e, 50, 5, generation);
        e.snapshot_save(&file);
        let v = fx
            .wk(&["--json", "backup", "etcd", "--snapshot-file", s(&file)])
            .ok()
            .json();
        ids.push(Fixture::snap_id(&v));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let v = fx
        .wk(&["--json", "forget", "--keep-last", "2", "--dry-run"])
        .ok()
        .json();
    let kept: Vec<&str> = v["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .filter(|s| s["keep"] == true)
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(kept.len(), 2, "{v:#}");
    assert!(
        !kept.contains(&ids[0].as_str()),
        "the oldest is not the one removed: {v:#}"
    );
}

#[test]
fn snapshots_named_by_id_are_removed_whatever_the_rules() {
    let (fx, _) = two_hosts(Backend::Local);
    let all = snaps(&fx);
    let (alpha, _) = all.iter().find(|(_, h)| h == "alpha").unwrap().clone();
    // Ids and rules do not mix; ids the selection options do not select are refused.
    fx.id(&["forget", &alpha[..8], "--keep-last", "1"])
        .code_is(2);
    fx.id(&["forget", &alpha[..8], "--host", "beta"])
        .code_is(2)
        .stderr_has(&["is not selected by --host beta", "nothing removed"]);
    fx.id(&["forget", &alpha[..8], "--dry-run"]).ok();
    assert_eq!(snaps(&fx).len(), 6);
    // The oldest of alpha's three (no rule was needed), then `latest` of beta, through the
    // selection options.
    let out = fx.id(&["--json", "forget", &alpha[..8]]);
    assert_eq!(out.ok().json()["deleted"], 1);
    let newest_beta = all
        .iter()
        .rev()
        .find(|(_, h)| h == "beta")
        .unwrap()
        .0
        .clone();
    let out = fx.id(&["--json", "forget", "latest", "--host", "beta"]);
    assert_eq!(out.ok().json()["deleted"], 1);
    let left: Vec<String> = snaps(&fx).into_iter().map(|(id, _)| id).collect();
    assert_eq!(left.len(), 4);
    assert!(!left.contains(&alpha) && !left.contains(&newest_beta));
}
