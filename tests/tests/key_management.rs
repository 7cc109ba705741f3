//! Key management: per-host write key labels recorded in every snapshot the key writes (so a
//! suspect host's snapshots can be listed and forgotten), and listing and removing key
//! objects without locking anyone out.

use cairn_e2e::*;
use std::fs;

#[test]
fn labelled_write_keys_mark_their_snapshots() {
    let fx = Fixture::new();
    let keys: Vec<_> = ["master-0", "master-1"]
        .iter()
        .map(|label| {
            let path = fx.path(&format!("{label}.key"));
            let out = fx.id(&[
                "--json",
                "key",
                "write-key",
                "--label",
                label,
                "-o",
                s(&path),
            ]);
            out.ok();
            assert_eq!(out.json()["label"], *label);
            path
        })
        .collect();
    let src = fx.dir("src");
    write_file(&src.join("a"), b"a");
    for (key, host) in keys.iter().zip(["master-0", "master-1"]) {
        let out = fx.run(&[
            "-r",
            s(&fx.repo),
            "-k",
            s(key),
            "--json",
            "backup",
            "--host",
            host,
            s(&src),
        ]);
        out.ok();
        assert_eq!(out.json()["facts"]["key.label"], host);
    }
    // The unlabelled fixture key writes no label.
    fx.backup(&[&src]);
    let all = fx.wk(&["--json", "snapshots"]).json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    let out = fx.wk(&["--json", "snapshots", "--key-label", "master-1"]);
    out.ok();
    let list = out.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["host"], "master-1");
    let text = fx.wk(&["snapshots"]);
    assert!(
        text.stdout.contains("written with write key master-0"),
        "{text}"
    );
    // A suspect host's snapshots are forgotten by label (the identity may always).
    fx.id(&[
        "forget",
        "--key-label",
        "master-1",
        "--keep-last",
        "0",
        "--unsafe-allow-remove-all",
    ])
    .ok();
    let left = fx.wk(&["--json", "snapshots"]).json();
    assert_eq!(left.as_array().unwrap().len(), 2);
    assert!(left
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["facts"]["key.label"] != "master-1"));
}

#[test]
fn invalid_labels_are_refused() {
    let fx = Fixture::new();
    let out = fx.id(&[
        "key",
        "write-key",
        "--label",
        "bad label",
        "-o",
        s(&fx.path("k")),
    ]);
    out.code_is(2).stderr_has(&["--label"]);
    assert!(!fx.path("k").exists());
    // A label edited into something invalid is an error naming the file, not ignored.
    let path = fx.path("edited.key");
    fx.id(&["key", "write-key", "--label", "ok", "-o", s(&path)])
        .ok();
    let text = fs::read_to_string(&path).unwrap().replace(":ok", ":no way");
    fs::write(&path, text).unwrap();
    let src = fx.dir("src");
    write_file(&src.join("a"), b"a");
    let out = fx.run(&["-r", s(&fx.repo), "-k", s(&path), "backup", s(&src)]);
    out.code_is(1).stderr_has(&["edited.key", "label"]);
}

#[test]
fn key_objects_are_listed_and_removed_safely() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    write_file(&src.join("a"), b"a");
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    // A second repository opened by an identity and a passphrase.
    let tmp = scratch();
    let repo = tmp.path().join("repo");
    let pass = tmp.path().join("pass");
    fs::write(&pass, "correct horse\n").unwrap();
    let r = s(&repo);
    let id = s(&fx.identity);
    cairn(
        &[
            "-r",
            r,
            "--passphrase-file",
            s(&pass),
            "init",
            "--recipient",
            &fx.recipient,
        ],
        &[],
    )
    .ok();
    let list = |creds: &[&str]| {
        let mut a = vec!["-r", r, "--json", "key", "list"];
        a.extend_from_slice(creds);
        let out = cairn(&a, &[]);
        out.ok();
        out.json().as_array().unwrap().clone()
    };
    let keys = list(&["-i", id]);
    assert_eq!(keys.len(), 2);
    let by_kind = |keys: &[serde_json::Value], kind: &str| {
        keys.iter().find(|k| k["kind"] == kind).unwrap().clone()
    };
    assert_eq!(by_kind(&keys, "recipients")["opens"], true);
    assert_eq!(
        by_kind(&keys, "passphrase")["opens"],
        serde_json::Value::Null
    );
    let keys = list(&["--passphrase-file", s(&pass)]);
    assert_eq!(by_kind(&keys, "passphrase")["opens"], true);
    // A planted object is listed as damaged and can be removed.
    fs::write(
        repo.join("keys/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        b"junk",
    )
    .unwrap();
    let keys = list(&["-i", id]);
    assert_eq!(by_kind(&keys, "damaged")["id"].as_str().unwrap().len(), 64);
    cairn(&["-r", r, "-i", id, "key", "remove", "01234567"], &[]).ok();
    // The passphrase key goes; the identity still opens the repository, the passphrase not.
    let pass_id = by_kind(&keys, "passphrase")["id"]
        .as_str()
        .unwrap()
        .to_string();
    cairn(&["-r", r, "-i", id, "key", "remove", &pass_id[..12]], &[]).ok();
    cairn(&["-r", r, "-i", id, "snapshots"], &[]).ok();
    cairn(&["-r", r, "--passphrase-file", s(&pass), "snapshots"], &[]).failed();
    // The last key object stays.
    let last = list(&["-i", id])[0]["id"].as_str().unwrap().to_string();
    cairn(&["-r", r, "-i", id, "key", "remove", &last], &[])
        .failed()
        .stderr_has(&["last key object"]);
    assert_eq!(list(&["-i", id]).len(), 1);
    // A write key can neither remove key objects nor tell which open.
    fx.wk(&["key", "remove", "ab"]).failed();
    let out = fx.wk(&["--json", "key", "list"]);
    out.ok();
    assert!(out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["opens"].is_null()));
    fx.restore(&snap, &fx.path("t"), &[]).ok();
}
