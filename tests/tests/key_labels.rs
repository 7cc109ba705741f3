//! Per-host write keys: a label given at export is recorded in every snapshot the key writes,
//! so a suspect host's snapshots can be listed and forgotten.

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
