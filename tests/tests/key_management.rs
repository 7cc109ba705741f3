//! Key management: per-host write key labels recorded in every snapshot the key writes (so a
//! suspect host's snapshots can be listed and forgotten), and listing and removing key
//! objects without locking anyone out.

use cairn_e2e::*;
use std::fs;
use std::path::{Path, PathBuf};

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

/// Run cairn on `fx`'s repository with `creds` (e.g. `["-i", FILE]`) and then `args`.
fn with(fx: &Fixture, creds: &[&str], args: &[&str]) -> Output {
    let mut a = vec!["-r", s(&fx.repo)];
    a.extend_from_slice(creds);
    a.extend_from_slice(args);
    fx.run(&a)
}

/// `key list --json` with `creds`.
fn key_list(fx: &Fixture, creds: &[&str]) -> Vec<serde_json::Value> {
    let out = with(fx, creds, &["--json", "key", "list"]);
    out.ok();
    out.json().as_array().unwrap().clone()
}

/// Restore the latest snapshot with `creds` and compare it with `src`.
#[track_caller]
fn restores(fx: &Fixture, creds: &[&str], src: &Path, target: &str) {
    let target = fx.path(target);
    with(fx, creds, &["restore", "latest", "--target", s(&target)]).ok();
    assert_trees_equal(src, &Fixture::restored(&target, src));
}

/// A new identity file in the fixture; returns its path and recipient.
fn new_identity(fx: &Fixture, name: &str) -> (PathBuf, String) {
    let path = fx.path(name);
    let out = cairn(&["key", "generate", "-o", s(&path)], &[]);
    out.ok();
    (path, out.stdout.trim().to_string())
}

#[test]
fn keys_are_added_labelled_and_removed_and_every_remaining_key_restores() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    write_file(&src.join("a"), b"content written before any key was added");
    fx.backup(&[&src]);
    let alice = ["-i", s(&fx.identity)];
    let original = key_list(&fx, &alice);
    assert_eq!(original.len(), 1);
    assert_eq!(original[0]["version"], 2);
    assert!(original[0]["created_unix"].as_i64().unwrap() > 1_700_000_000);
    let original = original[0]["id"].as_str().unwrap().to_string();

    // Another administrator's recipient, and a passphrase, each with a label.
    let (bob_id, bob) = new_identity(&fx, "bob.txt");
    let out = with(
        &fx,
        &alice,
        &[
            "--json",
            "key",
            "add",
            "--recipient",
            &bob,
            "--label",
            "bob",
        ],
    );
    out.ok();
    let bob_key = out.json()["added"].as_str().unwrap().to_string();
    let pass = fx.path("pass");
    fs::write(&pass, "a new passphrase\n").unwrap();
    with(
        &fx,
        &alice,
        &[
            "key",
            "add",
            "--new-passphrase-file",
            s(&pass),
            "--label",
            "ops",
        ],
    )
    .ok();
    let bob_creds = ["-i", s(&bob_id)];
    let pass_creds = ["--passphrase-file", s(&pass)];

    // Each credential sees the labels of what it opens, and says what it cannot open.
    let by_id =
        |keys: &[serde_json::Value], id: &str| keys.iter().find(|k| k["id"] == id).unwrap().clone();
    let seen_by_bob = key_list(&fx, &bob_creds);
    assert_eq!(seen_by_bob.len(), 3);
    assert_eq!(by_id(&seen_by_bob, &bob_key)["label"], "bob");
    assert_eq!(by_id(&seen_by_bob, &bob_key)["opens"], true);
    assert_eq!(by_id(&seen_by_bob, &original)["opens"], false);
    assert!(by_id(&seen_by_bob, &original)["label"].is_null());
    let seen_by_pass = key_list(&fx, &pass_creds);
    let ops = seen_by_pass
        .iter()
        .find(|k| k["kind"] == "passphrase")
        .unwrap();
    assert_eq!(
        (ops["label"].as_str(), ops["opens"].as_bool()),
        (Some("ops"), Some(true))
    );
    let text = with(&fx, &bob_creds, &["key", "list"]);
    text.ok();
    assert!(
        text.stdout.contains("bob") && text.stdout.contains("does not open"),
        "{text}"
    );

    // Every key reads what was written before it was added.
    for (creds, target) in [
        (&alice, "t-alice"),
        (&bob_creds, "t-bob"),
        (&pass_creds, "t-pass"),
    ] {
        restores(&fx, creds, &src, target);
    }

    // Bob removes the original key object (by prefix); every remaining key still restores,
    // including a backup written afterwards with the unchanged write key.
    with(&fx, &bob_creds, &["key", "remove", &original[..10]]).ok();
    write_file(&src.join("b"), b"written after the removal");
    fx.backup(&[&src]);
    restores(&fx, &bob_creds, &src, "t-bob-2");
    restores(&fx, &pass_creds, &src, "t-pass-2");
    with(&fx, &alice, &["snapshots"]).failed();

    // The passphrase goes too; Bob's key object is then the last and stays.
    let ops_id = ops["id"].as_str().unwrap();
    with(&fx, &bob_creds, &["key", "remove", ops_id]).ok();
    with(&fx, &bob_creds, &["key", "remove", &bob_key])
        .failed()
        .stderr_has(&["last key object", &bob_key]);
    restores(&fx, &bob_creds, &src, "t-bob-3");
}

#[test]
fn key_add_refuses_what_cannot_work() {
    let fx = Fixture::new();
    // SSH and plugin recipients: usage errors before anything is opened.
    for r in ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA", "age1yubikey1qwerty"] {
        fx.id(&["key", "add", "--recipient", r])
            .code_is(2)
            .stderr_has(&["--recipient", "cairn does not support"]);
    }
    fx.id(&["key", "add", "--recipient", "age1notarecipient"])
        .failed();
    fx.id(&["key", "add", "--label", "x"]).code_is(2);
    let (_, bob) = new_identity(&fx, "bob.txt");
    fx.id(&["key", "add", "--recipient", &bob, "--label", "no spaces"])
        .code_is(2)
        .stderr_has(&["--label"]);
    // A write key can add no key.
    fx.wk(&["key", "add", "--recipient", &bob])
        .failed()
        .stderr_has(&["identity or passphrase"]);
    assert_eq!(fx.objects("keys").len(), 1);
}

#[test]
fn passwd_replaces_the_passphrase() {
    let fx = Fixture::new();
    let old = fx.path("old");
    let new = fx.path("new");
    fs::write(&old, "old passphrase\n").unwrap();
    fs::write(&new, "new passphrase\n").unwrap();
    fx.id(&["key", "add", "--new-passphrase-file", s(&old)])
        .ok();
    let src = fx.dir("src");
    write_file(&src.join("a"), b"a");
    fx.backup(&[&src]);
    // passwd needs the current passphrase, not the identity.
    fx.id(&["key", "passwd", "--new-passphrase-file", s(&new)])
        .code_is(2);
    let old_creds = ["--passphrase-file", s(&old)];
    let out = with(
        &fx,
        &old_creds,
        &[
            "--json",
            "key",
            "passwd",
            "--new-passphrase-file",
            s(&new),
            "--label",
            "rotated",
        ],
    );
    out.ok();
    assert_eq!(out.json()["removed"].as_array().unwrap().len(), 1);
    with(&fx, &old_creds, &["snapshots"]).failed();
    let new_creds = ["--passphrase-file", s(&new)];
    restores(&fx, &new_creds, &src, "t");
    let keys = key_list(&fx, &new_creds);
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .any(|k| k["label"] == "rotated" && k["opens"] == true));
    // The identity's key object was never touched.
    restores(&fx, &["-i", s(&fx.identity)], &src, "t-id");
}

/// A repository as cairn made it before keys record version 2: its only key object holds the
/// version-1 record (no description, no master identity), encrypted to the identity. It still
/// opens, backs up with its (version-1) write key and restores; `key add` explains why it
/// cannot add a key there.
#[test]
fn version_1_key_objects_and_write_keys_keep_working() {
    use cairn_format::envelope;
    let fx = Fixture::new();
    let v1 = fx.write_key_record();
    let bytes = v1.encode();
    assert_eq!(bytes[6], 1, "write keys stay keys record version 1");
    let recipient = envelope::parse_recipient(&fx.recipient).unwrap();
    let ct = envelope::encrypt(&bytes, &[recipient]);
    let name = format!("keys/{}", cairn_format::Id::of_object(&ct).to_hex());
    for old in fx.objects("keys") {
        fs::remove_file(old).unwrap();
    }
    fs::write(fx.repo.join(&name), &ct).unwrap();

    let src = fx.dir("src");
    write_file(&src.join("a"), b"backed up with a version-1 write key");
    fx.backup(&[&src]);
    let alice = ["-i", s(&fx.identity)];
    restores(&fx, &alice, &src, "t");
    let keys = key_list(&fx, &alice);
    assert_eq!(
        (keys[0]["version"].as_u64(), keys[0]["opens"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(keys[0]["label"].is_null() && keys[0]["created_unix"].is_null());
    let (_, bob) = new_identity(&fx, "bob.txt");
    fx.id(&["key", "add", "--recipient", &bob])
        .failed()
        .stderr_has(&["no master identity", "version 2"]);
}
