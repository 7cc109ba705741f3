//! Snapshot selection and what `latest` means: `--source` and `--path` narrow `latest` and the
//! snapshots that `snapshots`, `forget` and `copy` act on; `diff ID latest` stays in ID's group;
//! `forget` states the scope of its limits and refuses rules that keep nothing of a group.

use cairn_e2e::*;
use serde_json::Value;
use std::fs;
use std::path::PathBuf;

/// One host's backups, oldest first: `a1`, `a2` of directory `a`, `b1` of directory `b`, and
/// `pods` of static pod resources, the newest snapshot of any kind.
struct Repo {
    fx: Fixture,
    a: PathBuf,
    b: PathBuf,
    a1: String,
    a2: String,
    b1: String,
    pods: String,
}

fn repo() -> Repo {
    let fx = Fixture::new();
    let (a, b) = (fx.dir("a"), fx.dir("b"));
    let backup = |dir: &PathBuf, content: &str| {
        fs::write(dir.join("f"), content).unwrap();
        Fixture::snap_id(&fx.backup(&[dir]))
    };
    let a1 = backup(&a, "a one");
    let a2 = backup(&a, "a two");
    let b1 = backup(&b, "b one");
    let resources = fx.dir("static-pod-resources");
    write_file(
        &resources.join("kube-apiserver-pod-3/kube-apiserver-pod.yaml"),
        b"pod",
    );
    let v = fx
        .wk(&["--json", "backup", "static-pods", "--dir", s(&resources)])
        .ok()
        .json();
    let pods = Fixture::snap_id(&v);
    Repo {
        fx,
        a,
        b,
        a1,
        a2,
        b1,
        pods,
    }
}

/// Ids that `snapshots --json` lists with `args` added.
fn listed(fx: &Fixture, args: &[&str]) -> Vec<String> {
    let mut a = vec!["--json", "snapshots"];
    a.extend_from_slice(args);
    fx.wk(&a)
        .ok()
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn source_and_path_select_snapshots_and_latest_in_every_command() {
    let r = repo();
    let fx = &r.fx;
    let (a, b) = (s(&r.a), s(&r.b));
    assert_eq!(listed(fx, &["--source", "static-pods"]), [r.pods.as_str()]);
    assert_eq!(
        listed(fx, &["--source", "paths"]),
        [r.a1.clone(), r.a2.clone(), r.b1.clone()]
    );
    assert_eq!(listed(fx, &["--path", a]), [r.a1.clone(), r.a2.clone()]);
    let a_slash = format!("{a}/");
    assert_eq!(
        listed(fx, &["--path", &a_slash, "--source", "paths"]),
        [r.a1.clone(), r.a2.clone()]
    );
    assert!(listed(fx, &["--path", a, "--path", b]).is_empty());
    assert!(listed(fx, &["--path", a, "--source", "etcd"]).is_empty());
    fx.wk(&["snapshots", "--source", "tape"])
        .code_is(2)
        .stderr_has(&["static-pods", "cluster"]);

    // latest: ls, cat and restore see the newest snapshot of the selection.
    let file = r.a.join("f");
    let out = fx.id(&["cat", "latest", s(&file), "--path", a]);
    assert_eq!(out.ok().stdout, "a two");
    fx.id(&["cat", "latest", s(&file)]).failed();
    let out = fx.wk(&["ls", "latest", "--source", "paths"]);
    assert!(out.ok().stdout.contains(b), "{out}");
    assert!(!out.stdout.contains(a), "{out}");
    let target = fx.path("restored");
    fx.id(&["restore", "latest", "--target", s(&target), "--path", a])
        .ok();
    let restored = Fixture::restored(&target, &r.a).join("f");
    assert_eq!(fs::read_to_string(restored).unwrap(), "a two");

    // copy without ids copies the selection; with `latest`, the selection's newest.
    let dst = fx.fresh_store("dst");
    let loc = dst.location();
    let key = s(&fx.write_key);
    fx.run(&["-r", &loc, "-k", key, "init", "--like", s(&fx.repo)])
        .ok();
    let copied = |args: &[&str]| {
        let mut c = vec!["--json", "copy", "--to", &loc];
        c.extend_from_slice(args);
        let v = fx.wk(&c).ok().json();
        let ids: Vec<String> = v["snapshots_copied"]
            .as_array()
            .expect("array")
            .iter()
            .map(|i| i.as_str().expect("id").to_string())
            .collect();
        ids
    };
    assert_eq!(copied(&["--source", "static-pods"]), [r.pods.as_str()]);
    assert_eq!(copied(&["latest", "--path", b]), [r.b1.as_str()]);

    // forget applies its policy to the selection only.
    fx.wk(&[
        "forget",
        "--keep-last",
        "1",
        "--source",
        "paths",
        "--path",
        a,
    ])
    .ok();
    assert_eq!(
        listed(fx, &[]),
        [r.a2.clone(), r.b1.clone(), r.pods.clone()]
    );
}

/// `diff` output's `to` and stderr for `args`.
fn diff(fx: &Fixture, args: &[&str]) -> (String, Output) {
    let mut a = vec!["--json", "diff"];
    a.extend_from_slice(args);
    let out = fx.wk(&a);
    let to = out.ok().json()["to"].as_str().expect("to").to_string();
    (to, out)
}

#[test]
fn diff_against_latest_stays_in_the_given_snapshots_group() {
    let r = repo();
    let fx = &r.fx;
    // Not the static pods backup, nor b's: the newest of a1's group.
    let (to, out) = diff(fx, &[&r.a1, "latest"]);
    assert_eq!(to, r.a2, "{out}");
    let short_a1 = &r.a1[..8];
    out.stderr_has(&[&format!("latest is {}", &r.a2[..8]), short_a1, "group"]);
    assert_eq!(out.json()["latest"]["in_group_of"], r.a1.as_str());
    let (to, _) = diff(fx, &[&r.b1, "latest"]);
    assert_eq!(to, r.b1);
    // Either side may be `latest`.
    let out = fx.wk(&["--json", "diff", "latest", &r.a1]);
    assert_eq!(out.ok().json()["from"], r.a2.as_str(), "{out}");
    // Selection options replace the group.
    let (to, out) = diff(fx, &[&r.a1, "latest", "--source", "static-pods"]);
    assert_eq!(to, r.pods, "{out}");
    out.stderr_has(&["matching the selection options"]);
    assert_eq!(out.json()["latest"]["in_group_of"], Value::Null);
    // The text output and the help say it too.
    let out = fx.wk(&["diff", &r.a1, "latest"]);
    out.ok().stderr_has(&[&format!("latest is {}", &r.a2[..8])]);
    let help = fx.run(&["diff", "--help"]);
    assert!(help.ok().stdout.contains("same group"), "{help}");
}

/// Two hosts, three backups of one directory each.
fn two_hosts() -> Fixture {
    let fx = Fixture::new();
    let src = fx.dir("src");
    for i in 0..3u64 {
        for host in ["alpha", "beta"] {
            fs::write(src.join("f"), format!("{host} {i}")).unwrap();
            let tag = format!("{host}{i}");
            fx.wk(&["backup", "--host", host, "--tag", &tag, s(&src)])
                .ok();
        }
    }
    fx
}

/// Hosts of the snapshots `forget --json` would keep with `args`.
fn kept_hosts(fx: &Fixture, args: &[&str]) -> Vec<String> {
    let mut a = vec!["--json", "forget", "--dry-run"];
    a.extend_from_slice(args);
    let v = fx.wk(&a).ok().json();
    v["snapshots"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| d["host"].as_str().expect("host").to_string())
        .collect()
}

#[test]
fn forget_limits_state_their_scope_max_count_per_group_max_size_whole_repository() {
    let fx = two_hosts();
    assert_eq!(kept_hosts(&fx, &["--max-count", "1"]), ["alpha", "beta"]);
    assert_eq!(
        kept_hosts(&fx, &["--keep-last", "3", "--max-count", "2"]),
        ["alpha", "beta", "alpha", "beta"]
    );
    assert_eq!(
        kept_hosts(&fx, &["--max-count", "1", "--group-by", ""]),
        ["beta"]
    );
    let out = fx.wk(&["forget", "--dry-run", "--max-count", "1"]);
    assert!(
        out.ok()
            .stdout
            .contains("--max-count 1 applies to each group"),
        "{out}"
    );
    let total = fx.store.bytes().to_string();
    let out = fx.wk(&["forget", "--dry-run", "--max-size", &total, "--prune"]);
    assert!(
        out.ok().stdout.contains("applies to the whole repository"),
        "{out}"
    );
    let v = fx
        .wk(&["--json", "forget", "--dry-run", "--max-count", "2"])
        .ok()
        .json();
    assert_eq!(v["limits"]["max_count_per_group"], 2, "{v}");
    assert_eq!(v["limits"]["max_size_whole_repository"], Value::Null, "{v}");
    let help = fx.run(&["forget", "--help"]);
    assert!(help
        .ok()
        .stdout
        .contains("at most N snapshots in each group"));
    assert!(help.stdout.contains("in the whole repository"));
}

#[test]
fn forget_refuses_rules_that_keep_nothing_of_a_group() {
    let fx = two_hosts();
    let count = || listed(&fx, &[]).len();
    for rules in [
        &["--keep-last", "0"][..],
        &["--keep-last", "0", "--dry-run"],
        &["--keep-daily", "0", "--keep-last", "0", "--max-count", "2"],
        &["--keep-tag", "no-such-tag"],
        // Keeps beta's newest, nothing of alpha.
        &["--keep-tag", "beta2"],
    ] {
        let mut a = vec!["forget"];
        a.extend_from_slice(rules);
        let out = fx.wk(&a);
        out.code_is(2)
            .stderr_has(&["--unsafe-allow-remove-all", "host alpha", "nothing removed"]);
        assert_eq!(count(), 6, "{out}");
    }
    // No rule at all is a usage error too, with or without the override.
    fx.wk(&["forget"]).code_is(2);
    fx.wk(&["forget", "--unsafe-allow-remove-all"]).code_is(2);
    assert_eq!(count(), 6);
    // Explicit intent.
    fx.wk(&["forget", "--keep-tag", "beta2", "--unsafe-allow-remove-all"])
        .ok();
    assert_eq!(count(), 1);
    fx.wk(&["forget", "--keep-last", "0", "--unsafe-allow-remove-all"])
        .ok();
    assert_eq!(count(), 0);
}
