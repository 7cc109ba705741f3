//! Write keys are append-only by default: forget, prune and repair refuse with a write key
//! until the identity holder allows host-side retention.

use cairn_e2e::*;

/// A repository created without host-side retention, with two snapshots.
fn append_only() -> Fixture {
    let fx = Fixture::new();
    // The fixture allows it for the other tests; take it back as the identity.
    fx.id(&["policy", "deny-host-retention"]).ok();
    let src = fx.dir("src");
    for v in ["one", "two"] {
        write_file(&src.join("f"), v.as_bytes());
        fx.backup(&[&src]);
    }
    fx
}

fn snapshot_count(fx: &Fixture) -> usize {
    fx.wk(&["--json", "snapshots"])
        .json()
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn write_keys_cannot_remove_history_by_default() {
    let fx = append_only();
    let out = fx.wk(&["--json", "policy", "show"]);
    out.ok();
    assert_eq!(out.json()["host_retention"], false);
    for args in [
        vec!["forget", "--keep-last", "1", "--group-by", "", "--prune"],
        vec!["forget", "--keep-last", "1"],
        vec!["prune"],
        vec!["repair", "index"],
        vec!["repair", "snapshots"],
    ] {
        let out = fx.wk(&args);
        out.code_is(1)
            .stderr_has(&["append-only", "--identity", "allow-host-retention"]);
    }
    assert_eq!(
        snapshot_count(&fx),
        2,
        "a refused command removed something"
    );
    // Looking is allowed.
    fx.wk(&["forget", "--keep-last", "1", "--dry-run"]).ok();
    fx.wk(&["prune", "--dry-run"]).ok();
    fx.wk(&["repair", "snapshots", "--dry-run"]).ok();
    // The write key cannot grant itself.
    fx.wk(&["policy", "allow-host-retention"])
        .code_is(1)
        .stderr_has(&["identity"]);
    // The identity may always.
    fx.id(&["forget", "--keep-last", "1", "--prune"]).ok();
    assert_eq!(snapshot_count(&fx), 1);
}

#[test]
fn the_identity_can_allow_and_forbid_host_side_retention() {
    let fx = append_only();
    fx.id(&["policy", "allow-host-retention"]).ok();
    assert_eq!(
        fx.wk(&["--json", "policy", "show"]).json()["host_retention"],
        true
    );
    fx.wk(&["forget", "--keep-last", "1", "--prune"]).ok();
    assert_eq!(snapshot_count(&fx), 1);
    fx.id(&["policy", "deny-host-retention"]).ok();
    fx.wk(&["prune"]).code_is(1).stderr_has(&["append-only"]);
    // A repository created with --allow-host-retention starts that way.
    let tmp = scratch();
    let repo = tmp.path().join("r");
    let out = cairn(
        &[
            "-r",
            s(&repo),
            "--json",
            "init",
            "--recipient",
            &fx.recipient,
            "--allow-host-retention",
        ],
        &[],
    );
    out.ok();
    assert_eq!(out.json()["host_retention"], true);
    let out = cairn(&["-r", s(&repo), "init", "--recipient", &fx.recipient], &[]);
    out.failed();
}
