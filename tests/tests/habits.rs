//! Habits from neighbouring tools get a hint, not a puzzle; scripts get JSON errors; a
//! closed stdout ends the process quietly.

use cairn_e2e::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

#[test]
fn a_pem_private_key_as_key_says_to_use_cert_key() {
    let fx = Fixture::new();
    let pem = fx.path("etcd-peer.key");
    fs::write(
        &pem,
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = fx.run(&["-r", s(&fx.repo), "--key", s(&pem), "snapshots"]);
    out.code_is(2)
        .stderr_has(&["PEM private key", "--cert-key"]);
    // The identity where the write key goes: the same kind of mistake, the same kind of
    // answer.
    let out = fx.run(&["-r", s(&fx.repo), "--key", s(&fx.identity), "snapshots"]);
    out.code_is(2)
        .stderr_has(&["is an age identity", "--identity FILE", "key write-key"]);
}

#[test]
fn identity_and_passphrase_file_together_are_refused() {
    let fx = Fixture::new();
    let pass = fx.path("pass");
    fs::write(&pass, "secret\n").unwrap();
    let out = fx.id(&["--passphrase-file", s(&pass), "snapshots"]);
    out.code_is(2)
        .stderr_has(&["--identity", "--passphrase-file", "give one"]);
}

#[test]
fn ssh_and_plugin_recipients_are_named_as_unsupported() {
    let tmp = scratch();
    let repo = tmp.path().join("repo");
    let out = cairn(
        &[
            "-r",
            s(&repo),
            "init",
            "--recipient",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA user@host",
        ],
        &[],
    );
    out.code_is(2).stderr_has(&["SSH public key", "X25519"]);
    let file = tmp.path().join("recipients.txt");
    fs::write(
        &file,
        "# team\nage1yubikey1qgw9d4xs2lk0hqzmhr7mzjw6gsn5ssqaa0vzfgs7h5qj3txa9wxzsn0a6d\n",
    )
    .unwrap();
    let out = cairn(
        &["-r", s(&repo), "init", "--recipients-file", s(&file)],
        &[],
    );
    out.code_is(2)
        .stderr_has(&["plugin recipient", "recipients.txt"]);
    assert!(!repo.join("config").exists(), "nothing is created");
}

#[test]
fn key_generate_creates_the_directory_and_writes_to_stdout_with_dash() {
    let tmp = scratch();
    let path = tmp.path().join("home/.config/cairn/identity.txt");
    let out = cairn(&["key", "generate", "-o", s(&path)], &[]);
    out.ok();
    assert!(out.stdout.trim().starts_with("age1"));
    let dir_mode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = cairn(&["key", "generate", "-o", "-"], &[]);
    out.ok();
    assert!(out.stdout.contains("AGE-SECRET-KEY-1"), "{out}");
    out.stderr_has(&["Public key: age1"]);
    // What went to stdout is a working identity for the age CLI's format.
    let id = tmp.path().join("from-stdout.txt");
    fs::write(&id, &out.stdout).unwrap();
    fs::set_permissions(&id, fs::Permissions::from_mode(0o600)).unwrap();
    let repo = tmp.path().join("repo");
    cairn(&["-r", s(&repo), "-i", s(&id), "init"], &[]).ok();
    cairn(&["-r", s(&repo), "-i", s(&id), "snapshots"], &[]).ok();
}

#[test]
fn key_files_readable_by_others_are_warned_about() {
    let fx = Fixture::new();
    fs::set_permissions(&fx.identity, fs::Permissions::from_mode(0o644)).unwrap();
    let out = fx.id(&["snapshots"]);
    out.ok()
        .stderr_has(&["accessible by group or others", "chmod 600"]);
    fs::set_permissions(&fx.identity, fs::Permissions::from_mode(0o600)).unwrap();
    let out = fx.id(&["snapshots"]);
    assert!(!out.stderr.contains("chmod"), "{out}");
}

#[test]
fn empty_or_control_character_hosts_are_refused() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    write_file(&src.join("a"), b"a");
    fx.wk(&["backup", "--host", "", s(&src)])
        .code_is(2)
        .stderr_has(&["--host is empty"]);
    fx.wk(&["backup", "--host", "master-0\n[fake]", s(&src)])
        .code_is(2)
        .stderr_has(&["control characters"]);
    fx.wk(&["backup", "--tag", "", s(&src)])
        .code_is(2)
        .stderr_has(&["not a valid tag"]);
    assert!(fx.object_names("snapshots").is_empty());
}

#[test]
fn a_directory_named_like_a_source_gets_a_tip() {
    let fx = Fixture::new();
    let cwd = fx.dir("here");
    fs::create_dir(cwd.join("etcd")).unwrap();
    let env = fx.env();
    let out = cairn_in(&cwd, &fx.wk_args(&["backup", "etcd"]), &env_refs(&env));
    out.code_is(2);
    let err = &out.stderr;
    assert!(err.contains("write ./etcd"), "{err}");
    // Options between `backup` and the source make the source a path.
    let repo = fx.store.location();
    let args = ["backup", "-r", &repo, "etcd", "--snapshot-file", "x.db"];
    let out = cairn_in(&cwd, &args, &env_refs(&env));
    out.code_is(2)
        .stderr_has(&["`etcd` is read as a path", "cairn backup etcd -r REPO"]);
}

#[test]
fn errors_are_json_on_stderr_with_json() {
    let fx = Fixture::new();
    // A runtime failure.
    let out = fx.wk(&["--json", "restore", "latest", "--target", s(&fx.path("t"))]);
    out.failed();
    let e: serde_json::Value = serde_json::from_str(out.stderr.trim()).expect("one JSON object");
    assert_eq!(e["error"]["code"], "error");
    assert_eq!(e["error"]["exit"], 1);
    assert!(!e["error"]["message"].as_str().unwrap().is_empty());
    // A usage error from the runtime checks, with its hint.
    let src = fx.dir("src");
    let out = fx.wk(&["--json", "backup", "--host", "", s(&src)]);
    out.code_is(2);
    let e: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "usage");
    assert!(e["error"]["hint"].as_str().unwrap().contains("--host"));
    // A usage error from the argument parser.
    let out = fx.wk(&["--json", "snapshots", "--no-such-flag"]);
    out.code_is(2);
    let e: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(e["error"]["code"], "usage");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--no-such-flag"));
    // Warnings and log events on the way are JSON lines too, the error last.
    write_file(&src.join("f"), b"x");
    fx.backup(&[&src]);
    // Damaged index objects are skipped with a warning each; the restore then fails.
    for name in fx.object_names("index") {
        fx.store.flip_bits(&name, -1, 0xff);
    }
    let out = fx.id(&["--json", "restore", "latest", "--target", s(&fx.path("t"))]);
    out.failed();
    let lines: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{out}")))
        .collect();
    assert!(lines.len() >= 2, "{out}");
    assert!(lines[..lines.len() - 1]
        .iter()
        .all(|l| l["level"] == "WARN" && l["message"].is_string()));
    assert!(
        lines.last().unwrap()["error"]["message"].is_string(),
        "{out}"
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    // More listing than a pipe buffers (64 KiB), so the writer meets the closed pipe.
    for i in 0..1500 {
        write_file(&src.join(format!("{i:04}-{}", "n".repeat(60))), b"x");
    }
    // And a file larger than a pipe buffers, for `cat`.
    write_file(&src.join("big.bin"), &random_bytes(5, 1 << 20));
    fx.backup(&[&src]);
    let big = format!("{}/big.bin", s(&src));
    for args in [
        fx.wk_args(&["snapshots"]),
        fx.wk_args(&["ls", "latest"]),
        fx.wk_args(&["--json", "ls", "latest"]),
        fx.id_args(&["cat", "latest", &big]),
        // clap_complete panics on a failed write: the script (~200 KB) is written by cairn.
        vec!["completions", "bash"],
    ] {
        let env = fx.env();
        let mut cmd = background::clean_command(&cairn_bin(), &env_refs(&env));
        let mut child = cmd.args(&args).stdout(Stdio::piped()).spawn().unwrap();
        // Read one byte, then close the pipe, as `| head -c1` does.
        let mut stdout = child.stdout.take().unwrap();
        let mut one = [0u8; 1];
        stdout.read_exact(&mut one).unwrap();
        drop(stdout);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(!stderr.contains("panic"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert!(status.code() != Some(101), "{args:?}: {status}");
        if !args.contains(&"snapshots") {
            // The output outgrows the pipe: cairn meets the closed pipe and says so by status.
            assert_eq!(status.code(), Some(141), "{args:?}: {stderr}");
        }
    }
}

#[test]
fn ls_quotes_names_that_would_mislead() {
    let fx = Fixture::new();
    let src = fx.dir("src");
    write_file(&src.join("evil\nname"), b"x");
    let bad: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(b"bad\xffbyte");
    write_file(&src.join(bad), b"y");
    let r = fx.backup(&[&src]);
    let out = fx.wk(&["ls", &Fixture::snap_id(&r)]);
    out.ok();
    assert!(out.stdout.contains("evil\\nname'"), "{out}");
    assert!(out.stdout.contains("bad\\xffbyte'"), "{out}");
    assert!(!out.stdout.lines().any(|l| l == "name"), "{out}");
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let out = cairn(&["completions", "bash"], &[]);
    out.ok();
    assert!(out.stdout.contains("cairn"));
    for sub in ["backup", "restore", "forget", "check"] {
        assert!(out.stdout.contains(sub), "bash completion lacks {sub}");
    }
    let tmp = scratch();
    let script = tmp.path().join("cairn.bash");
    fs::write(&script, &out.stdout).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n rejects the completion script");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        cairn(&["completions", shell], &[]).ok();
    }
    cairn(&["completions", "tcsh"], &[]).code_is(2);

    let dir = tmp.path().join("man/man1");
    cairn(&["generate", "man", s(&dir)], &[]).ok();
    for page in [
        "cairn.1",
        "cairn-backup.1",
        "cairn-backup-etcd.1",
        "cairn-restore.1",
        "cairn-key-write-key.1",
    ] {
        let text = fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is not a man page"
        );
    }
    // Where man is installed, it renders them without complaint.
    if let Ok(out) = std::process::Command::new("man")
        .arg("-l")
        .arg(dir.join("cairn-backup.1"))
        .env("MANWIDTH", "80")
        .output()
    {
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains("Back up files"));
        }
    }
}

#[test]
fn include_with_the_cluster_backup_layout_is_a_usage_error() {
    let fx = Fixture::new();
    let out = fx.id(&[
        "restore",
        "latest",
        "--layout",
        "cluster-backup",
        "--include",
        "*.db",
        "--target",
        s(&fx.path("t")),
    ]);
    out.code_is(2).stderr_has(&["--include", "cluster-backup"]);
}
