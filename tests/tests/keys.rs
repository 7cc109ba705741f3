//! Keys and roles: identities, recipients files, passphrases, write keys, environment
//! variables, and the errors an operator sees when something does not fit.

use cairn_e2e::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;

#[test]
fn key_generate_writes_a_private_age_identity() {
    let tmp = scratch();
    let id = tmp.path().join("id.txt");
    let out = cairn(&["key", "generate", "-o", s(&id)], &[]);
    out.ok();
    let recipient = out.stdout.trim();
    assert!(
        recipient.starts_with("age1") && recipient.len() == 62,
        "{out}"
    );
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "only the recipient on stdout\n{out}"
    );
    let mode = fs::metadata(&id).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "identity file mode");
    let text = fs::read_to_string(&id).unwrap();
    assert!(text.contains("AGE-SECRET-KEY-1"), "{text}");
    assert!(
        !out.stdout.contains("AGE-SECRET-KEY"),
        "secret printed\n{out}"
    );
    // The age CLI agrees on the recipient: it is a standard age identity file.
    let from_age = sh("age-keygen", &["-y", s(&id)]);
    assert_eq!(String::from_utf8_lossy(&from_age).trim(), recipient);

    // --json form.
    let id2 = tmp.path().join("id2.txt");
    let out = cairn(&["--json", "key", "generate", "-o", s(&id2)], &[]);
    out.ok();
    let j = out.json();
    assert!(j["recipient"].as_str().unwrap().starts_with("age1"));

    // Never replaces an existing file.
    let before = fs::read(&id).unwrap();
    cairn(&["key", "generate", "-o", s(&id)], &[]).failed();
    assert_eq!(
        fs::read(&id).unwrap(),
        before,
        "existing identity was modified"
    );
}

fn write_key_can_back_up_and_list_but_never_read_content(backend: Backend) {
    let fx = Fixture::on(backend);
    let mode = fs::metadata(&fx.write_key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "write key file mode");
    let wk_text = fs::read_to_string(&fx.write_key).unwrap();
    assert!(wk_text.contains("CAIRN-WRITE-KEY-1:"));
    assert!(
        !wk_text.contains("AGE-SECRET-KEY"),
        "write key must not be an age identity file in clear"
    );
    let src = fx.path("src");
    write_file(
        &src.join("etcd-peer.key"),
        b"-----BEGIN PRIVATE KEY-----\nsecret\n",
    );
    let s1 = Fixture::snap_id(&fx.backup(&[&src]));
    write_file(&src.join("new.yaml"), b"new: file\n");
    let s2 = Fixture::snap_id(&fx.backup(&[&src]));

    fx.wk(&["snapshots"]).ok();
    let out = fx.wk(&["ls", "latest"]);
    out.ok();
    assert!(out.stdout.contains("etcd-peer.key"), "{out}");
    let out = fx.wk(&["diff", &s1, &s2]);
    out.ok();
    assert!(out.stdout.contains("new.yaml"), "{out}");

    let target = fx.path("t");
    let out = fx.wk(&["restore", &s2, "--target", s(&target)]);
    out.failed()
        .stderr_has(&["write key", "cannot decrypt file contents"]);
    assert!(
        files_below(&target).is_empty(),
        "a refused restore wrote files"
    );
    let out = fx.wk(&["cat", &s2, &format!("{}/etcd-peer.key", s(&src))]);
    out.failed()
        .stderr_has(&["write key", "cannot decrypt file contents"]);
    assert!(out.stdout_bytes.is_empty(), "{out}");
    assert!(!out.stderr.contains("secret"), "{out}");
    // Not a generic decryption failure.
    assert!(!out.stderr.to_lowercase().contains("damaged"), "{out}");

    // A write key cannot export write keys (that needs the identity).
    let wk2 = fx.path("wk2");
    fx.wk(&["key", "write-key", "-o", s(&wk2)])
        .failed()
        .stderr_has(&["identity"]);
    assert!(!wk2.exists());

    // The identity reads what the write key wrote.
    let out = fx.id(&["cat", &s2, &format!("{}/etcd-peer.key", s(&src))]);
    out.ok();
    assert_eq!(out.stdout_bytes, b"-----BEGIN PRIVATE KEY-----\nsecret\n");
}
backend_tests!(write_key_can_back_up_and_list_but_never_read_content);

fn wrong_identity_and_foreign_write_key_are_refused(backend: Backend) {
    let a = Fixture::on(backend);
    let b = Fixture::on(backend);
    // b's identity on a's repository.
    let out = a.run(&["-r", s(&a.repo), "-i", s(&b.identity), "snapshots"]);
    out.failed().stderr_has(&["identit"]);
    // b's write key on a's repository.
    let out = a.run(&["-r", s(&a.repo), "-k", s(&b.write_key), "snapshots"]);
    out.failed().stderr_has(&["write key", "belongs to"]);
    let src = a.path("src");
    write_file(&src.join("f"), b"x");
    let out = a.run(&["-r", s(&a.repo), "-k", s(&b.write_key), "backup", s(&src)]);
    out.failed().stderr_has(&["write key"]);
    assert!(
        a.object_names("snapshots").is_empty(),
        "foreign write key saved a snapshot"
    );
    assert!(
        a.object_names("data").is_empty(),
        "foreign write key stored data"
    );

    // An identity file that is not one.
    let bogus = a.path("bogus.txt");
    write_file(&bogus, b"this is not an identity\n");
    a.run(&["-r", s(&a.repo), "-i", s(&bogus), "snapshots"])
        .failed()
        .stderr_has(&["identity"]);
    // A write key file that is not one.
    a.run(&["-r", s(&a.repo), "-k", s(&bogus), "snapshots"])
        .failed()
        .stderr_has(&["write key"]);
    // No key at all.
    a.run(&["-r", s(&a.repo), "snapshots"])
        .failed()
        .stderr_has(&["--identity"]);
}
backend_tests!(wrong_identity_and_foreign_write_key_are_refused);

fn init_with_recipients_file_lets_every_listed_identity_in(backend: Backend) {
    let tmp = scratch();
    let id1 = tmp.path().join("id1.txt");
    let id2 = tmp.path().join("id2.txt");
    let outsider = tmp.path().join("outsider.txt");
    // Identities from the age CLI itself.
    sh("age-keygen", &["-o", s(&id1)]);
    sh("age-keygen", &["-o", s(&id2)]);
    sh("age-keygen", &["-o", s(&outsider)]);
    let r1 = String::from_utf8(sh("age-keygen", &["-y", s(&id1)])).unwrap();
    let r2 = String::from_utf8(sh("age-keygen", &["-y", s(&id2)])).unwrap();
    let rfile = tmp.path().join("recipients.txt");
    write_file(
        &rfile,
        format!("# admins\n{}\n\n# dr site\n{}\n", r1.trim(), r2.trim()).as_bytes(),
    );
    let store = backend.fresh(tmp.path(), "repo");
    let repo = std::path::PathBuf::from(store.location());
    let env = store.env();
    let run = |args: &[&str]| cairn(args, &env_refs(&env));
    let out = run(&[
        "--json",
        "-r",
        s(&repo),
        "init",
        "--recipients-file",
        s(&rfile),
    ]);
    out.ok();
    let j = out.json();
    assert_eq!(j["id"].as_str().unwrap().len(), 64);
    assert_eq!(j["recipients"].as_array().unwrap().len(), 2, "{out}");

    let src = tmp.path().join("src");
    write_file(&src.join("kubeconfig"), b"apiVersion: v1\nkind: Config\n");
    run(&["-r", s(&repo), "-i", s(&id1), "backup", s(&src)]).ok();
    for id in [&id1, &id2] {
        let out = run(&[
            "-r",
            s(&repo),
            "-i",
            s(id),
            "cat",
            "latest",
            &format!("{}/kubeconfig", s(&src)),
        ]);
        out.ok();
        assert_eq!(out.stdout_bytes, b"apiVersion: v1\nkind: Config\n");
    }
    run(&["-r", s(&repo), "-i", s(&outsider), "snapshots"])
        .failed()
        .stderr_has(&["identit"]);

    // An empty recipients file and no passphrase: nothing could ever open the repository.
    let empty = tmp.path().join("empty.txt");
    write_file(&empty, b"# nobody\n");
    let store2 = backend.fresh(tmp.path(), "repo2");
    let repo2 = std::path::PathBuf::from(store2.location());
    run(&["-r", s(&repo2), "init", "--recipients-file", s(&empty)])
        .failed()
        .stderr_has(&["recipient"]);
    assert!(!store2.exists("config"));
    // A malformed recipient is refused.
    let store3 = backend.fresh(tmp.path(), "repo3");
    let repo3 = std::path::PathBuf::from(store3.location());
    run(&["-r", s(&repo3), "init", "--recipient", "age1notarecipient"]).failed();
    assert!(!store3.exists("config"));
}
backend_tests!(init_with_recipients_file_lets_every_listed_identity_in);

fn passphrase_repository_round_trip_and_wrong_passphrase(backend: Backend) {
    let tmp = scratch();
    let store = backend.fresh(tmp.path(), "repo");
    let repo = std::path::PathBuf::from(store.location());
    let env = store.env();
    let run = |args: &[&str]| cairn(args, &env_refs(&env));
    let pass = tmp.path().join("pass");
    write_file(
        &pass,
        b"correct horse battery staple\nsecond line ignored\n",
    );
    run(&["-r", s(&repo), "--passphrase-file", s(&pass), "init"]).ok();
    let keys = store.names("keys");
    assert_eq!(keys.len(), 1);
    // The key object is an age file encrypted to a passphrase (scrypt stanza).
    let key_bytes = store.read(&keys[0]).unwrap();
    let header = String::from_utf8_lossy(&key_bytes[..key_bytes.len().min(200)]);
    assert!(
        header.starts_with("age-encryption.org/v1\n-> scrypt "),
        "{header}"
    );

    let src = tmp.path().join("src");
    write_file(&src.join("a.txt"), &text_bytes(9, 100_000));
    // The passphrase is a full-access credential (global flag after the subcommand too).
    let out = run(&[
        "-r",
        s(&repo),
        "backup",
        s(&src),
        "--passphrase-file",
        s(&pass),
    ]);
    out.ok();
    let target = tmp.path().join("t");
    let mut with_env = env_refs(&env);
    with_env.extend([
        ("CAIRN_REPO", repo.as_os_str()),
        ("CAIRN_PASSPHRASE_FILE", pass.as_os_str()),
    ]);
    cairn(&["restore", "latest", "--target", s(&target)], &with_env).ok();
    assert_trees_equal(&src, &Fixture::restored(&target, &src));

    let wrong = tmp.path().join("wrong");
    write_file(&wrong, b"Tr0ub4dor&3\n");
    let out = run(&["-r", s(&repo), "--passphrase-file", s(&wrong), "snapshots"]);
    out.failed().stderr_has(&["passphrase"]);
    let empty = tmp.path().join("empty");
    write_file(&empty, b"");
    run(&["-r", s(&repo), "--passphrase-file", s(&empty), "snapshots"])
        .failed()
        .stderr_has(&["passphrase"]);

    // A write key exported with the passphrase backs up; the passphrase restores.
    let wk = tmp.path().join("write.key");
    run(&[
        "-r",
        s(&repo),
        "--passphrase-file",
        s(&pass),
        "key",
        "write-key",
        "-o",
        s(&wk),
    ])
    .ok();
    write_file(&src.join("b.txt"), b"written with the write key");
    run(&["-r", s(&repo), "-k", s(&wk), "backup", s(&src)]).ok();
    let out = run(&[
        "-r",
        s(&repo),
        "--passphrase-file",
        s(&pass),
        "cat",
        "latest",
        &format!("{}/b.txt", s(&src)),
    ]);
    out.ok();
    assert_eq!(out.stdout_bytes, b"written with the write key");
    run(&[
        "-r",
        s(&repo),
        "-k",
        s(&wk),
        "cat",
        "latest",
        &format!("{}/b.txt", s(&src)),
    ])
    .failed()
    .stderr_has(&["write key", "cannot decrypt file contents"]);
}
backend_tests!(passphrase_repository_round_trip_and_wrong_passphrase);

fn environment_variables_name_repository_and_keys(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("src");
    write_file(&src.join("env.txt"), b"from the environment");
    let env_wk: [(&str, &OsStr); 2] = [
        ("CAIRN_REPO", fx.repo.as_os_str()),
        ("CAIRN_KEY", fx.write_key.as_os_str()),
    ];
    let out = fx.run_env(&["--json", "backup", s(&src)], &env_wk);
    out.ok();
    let snap = Fixture::snap_id(&out.json());
    let out = fx.run_env(&["--json", "snapshots"], &env_wk);
    out.ok();
    assert_eq!(out.json()[0]["id"], snap.as_str());
    let env_id: [(&str, &OsStr); 2] = [
        ("CAIRN_REPO", fx.repo.as_os_str()),
        ("CAIRN_IDENTITY", fx.identity.as_os_str()),
    ];
    let out = fx.run_env(&["cat", &snap, &format!("{}/env.txt", s(&src))], &env_id);
    out.ok();
    assert_eq!(out.stdout_bytes, b"from the environment");
    // The write key in the environment cannot read content.
    fx.run_env(&["cat", &snap, &format!("{}/env.txt", s(&src))], &env_wk)
        .failed()
        .stderr_has(&["write key"]);
    // The command line wins over the environment.
    let other = fx.fresh_store("elsewhere").location();
    fx.run_env(&["-r", &other, "snapshots"], &env_id)
        .failed()
        .stderr_has(&["not a cairn repository"]);
    // No repository at all.
    fx.run_env(&["snapshots"], &[("CAIRN_KEY", fx.write_key.as_os_str())])
        .failed()
        .stderr_has(&["--repo", "CAIRN_REPO"]);
}
backend_tests!(environment_variables_name_repository_and_keys);

#[test]
fn missing_and_existing_repositories() {
    let fx = Fixture::new();
    let nowhere = fx.path("no-repo-here");
    let out = cairn(
        &["-r", s(&nowhere), "-i", s(&fx.identity), "snapshots"],
        &[],
    );
    out.failed()
        .stderr_has(&["not a cairn repository", "cairn init"]);
    // A directory that exists but holds no repository.
    let empty = fx.dir("empty-dir");
    cairn(
        &["-r", s(&empty), "-k", s(&fx.write_key), "ls", "latest"],
        &[],
    )
    .failed()
    .stderr_has(&["not a cairn repository"]);
    // file:// URLs name the same thing.
    let url = format!("file://{}", s(&fx.repo));
    cairn(&["-r", &url, "-k", s(&fx.write_key), "snapshots"], &[]).ok();

    // init on an existing repository refuses and changes nothing.
    let before: Vec<_> = files_below(&fx.repo)
        .into_iter()
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    let out = cairn(
        &["-r", s(&fx.repo), "init", "--recipient", &fx.recipient],
        &[],
    );
    out.failed().stderr_has(&["already"]);
    let after: Vec<_> = files_below(&fx.repo)
        .into_iter()
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    assert!(
        before == after,
        "init on an existing repository modified it"
    );
}

#[test]
fn newer_format_version_asks_for_an_upgrade() {
    let fx = Fixture::new();
    let cfg = fx.repo.join("config");
    let mut bytes = fs::read(&cfg).unwrap();
    assert_eq!(&bytes[..8], b"cairnC\x01\x00", "config record header");
    bytes[6] = 2;
    fs::write(&cfg, &bytes).unwrap();
    for out in [
        fx.id(&["snapshots"]),
        fx.wk(&["snapshots"]),
        fx.wk(&["backup", s(&fx.dir("src"))]),
    ] {
        out.failed().stderr_has(&["version 2", "upgrade"]);
        assert!(
            !out.stderr.to_lowercase().contains("damaged"),
            "a newer version is not damage\n{out}"
        );
    }
    assert!(fx.objects("snapshots").is_empty());
}

fn recipient_and_passphrase_together_both_open_the_repository(backend: Backend) {
    let tmp = scratch();
    let id = tmp.path().join("id.txt");
    let recipient = cairn(&["key", "generate", "-o", s(&id)], &[]);
    recipient.ok();
    let pass = tmp.path().join("pass");
    write_file(&pass, b"both ways in\n");
    let store = backend.fresh(tmp.path(), "repo");
    let repo = std::path::PathBuf::from(store.location());
    let env = store.env();
    let run = |args: &[&str]| cairn(args, &env_refs(&env));
    run(&[
        "-r",
        s(&repo),
        "init",
        "--recipient",
        recipient.stdout.trim(),
        "--passphrase-file",
        s(&pass),
    ])
    .ok();
    assert_eq!(store.names("keys").len(), 2);
    let src = tmp.path().join("src");
    write_file(&src.join("f"), b"shared secret");
    run(&["-r", s(&repo), "-i", s(&id), "backup", s(&src)]).ok();
    let path = format!("{}/f", s(&src));
    for cred in [["-i", s(&id)], ["--passphrase-file", s(&pass)]] {
        let out = run(&["-r", s(&repo), cred[0], cred[1], "cat", "latest", &path]);
        out.ok();
        assert_eq!(out.stdout_bytes, b"shared secret");
    }
}
backend_tests!(recipient_and_passphrase_together_both_open_the_repository);
