//! Command-line behaviour around the edges: unreadable and missing paths, special files,
//! restore targets that cannot be used, a full disk, exit codes and output hygiene. What
//! concerns the repository (partial snapshots, nothing saved on failure, snapshot selection)
//! runs on a local directory and on S3.

use cairn_e2e::small_fs::SmallFs;
use cairn_e2e::*;
use std::fs;

fn missing_path_next_to_an_existing_one_gives_a_partial_snapshot(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("present");
    write_file(&src.join("kept.yaml"), b"kept: true\n");
    let missing = fx.path("absent/etc/origin");
    let out = fx.wk(&["--json", "backup", s(&src), s(&missing)]);
    out.code_is(3);
    let r = out.json();
    let unreadable = r["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{out}");
    assert!(
        unreadable[0]["path"]
            .as_str()
            .unwrap()
            .starts_with(s(&fx.path("absent"))),
        "{out}"
    );
    assert!(!unreadable[0]["error"].as_str().unwrap().is_empty());
    // Listed on stderr too, for people and logs.
    out.stderr_has(&["could not be read", "absent"]);
    // The snapshot was saved, with what could be read, and says so.
    let snap = Fixture::snap_id(&r);
    let out = fx.wk(&["--json", "snapshots"]);
    out.ok();
    let list = out.json();
    assert_eq!(list[0]["id"], snap.as_str());
    assert_eq!(list[0]["stats"]["unreadable"], 1);
    let target = fx.path("t");
    fx.restore(&snap, &target, &[]).ok();
    assert_trees_equal(&src, &Fixture::restored(&target, &src));
    // Text mode exits 3 too.
    fx.wk(&["backup", s(&src), s(&missing)]).code_is(3);
}
backend_tests!(missing_path_next_to_an_existing_one_gives_a_partial_snapshot);

fn all_paths_missing_fails_and_saves_nothing(backend: Backend) {
    let fx = Fixture::on(backend);
    let out = fx.wk(&[
        "--json",
        "backup",
        s(&fx.path("nope1")),
        s(&fx.path("nope2")),
    ]);
    out.code_is(1).stderr_has(&["none of the paths"]);
    assert!(fx.object_names("snapshots").is_empty());
    let out = fx.wk(&["--json", "snapshots"]);
    out.ok();
    assert_eq!(out.json(), serde_json::json!([]));
    // No paths at all is a usage error.
    fx.wk(&["backup"]).code_is(2);
}
backend_tests!(all_paths_missing_fails_and_saves_nothing);

#[test]
fn fifo_is_recorded_not_read() {
    // If backup opened the FIFO for reading it would block forever (no writer): the helper's
    // timeout would fail the test.
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("regular"), b"r");
    mkfifo(&src.join("pipe"), 0o620);
    set_mtime(&src.join("pipe"), 1_650_000_000, 987_654_321);
    let started = std::time::Instant::now();
    let r = fx.backup(&[&src]);
    assert!(started.elapsed().as_secs() < 60);
    assert_eq!(r["files"].as_u64().unwrap(), 1, "{r}");
    assert_eq!(r["files_read"].as_u64().unwrap(), 1, "{r}");
    let snap = Fixture::snap_id(&r);
    let out = fx.wk(&["--json", "ls", &snap, &format!("{}/pipe", s(&src))]);
    out.ok();
    let items = out.json();
    assert_eq!(items[0]["type"], "fifo");
    assert_eq!(items[0]["mode"], "0620");
    assert_eq!(items[0]["size"], 0);
    let target = fx.path("t");
    fx.restore(&snap, &target, &[]).ok();
    assert_trees_equal(&src, &Fixture::restored(&target, &src));
}

#[test]
fn restore_target_that_is_a_file_is_refused() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("f"), b"f");
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let target = fx.path("a-file");
    write_file(&target, b"i am a file");
    let out = fx.restore(&snap, &target, &[]);
    out.code_is(1).stderr_has(&[s(&target), "not a directory"]);
    assert_eq!(fs::read(&target).unwrap(), b"i am a file");
    // With --overwrite as well.
    fx.restore(&snap, &target, &["--overwrite"]).code_is(1);
    assert_eq!(fs::read(&target).unwrap(), b"i am a file");
    // A target below a file.
    let below = target.join("sub");
    fx.restore(&snap, &below, &[]).code_is(1);
}

#[test]
fn full_disk_during_restore_fails_cleanly() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("small.txt"), b"fits");
    write_file(&src.join("zz-big.bin"), &random_bytes(31, 5_000_000));
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let Some(mnt) = SmallFs::mount(&fx.path("mnt")) else {
        eprintln!("note: cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN); skipping");
        return;
    };
    let target = mnt.dir.join("target");
    let out = fx.restore(&snap, &target, &[]);
    out.failed().stderr_has(&["No space left", "zz-big.bin"]);
    let leftovers: Vec<_> = files_below(&mnt.dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".cairn-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(!Fixture::restored(&target, &src).join("zz-big.bin").exists());
    drop(mnt);
}

#[test]
fn usage_errors_exit_2_and_help_lists_every_command() {
    let out = cairn(&["--help"], &[]);
    out.ok();
    for c in [
        "init",
        "key",
        "backup",
        "snapshots",
        "ls",
        "cat",
        "restore",
        "diff",
    ] {
        assert!(
            out.stdout.lines().any(|l| l.trim_start().starts_with(c)),
            "--help lacks {c}\n{out}"
        );
    }
    cairn(&["no-such-command"], &[]).code_is(2);
    cairn(&["restore", "latest"], &[]).code_is(2); // --target missing
    let out = cairn(&["--version"], &[]);
    out.ok();
    assert!(out.stdout.starts_with("cairn "), "{out}");
}

#[test]
fn stderr_has_no_colour_codes_when_not_a_terminal() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("f"), b"f");
    let out = fx.wk(&["backup", s(&src), s(&fx.path("missing"))]);
    out.code_is(3);
    assert!(
        out.stderr.contains("WARN") || out.stderr.contains("warning"),
        "{out}"
    );
    assert!(
        !out.stderr.contains('\u{1b}'),
        "ANSI escape in stderr: {:?}",
        out.stderr
    );
}

#[test]
fn damaged_object_error_states_its_cause_once() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("f"), &random_bytes(41, 200_000));
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let pack = &fx.objects("data")[0];
    let mut b = fs::read(pack).unwrap();
    let n = b.len();
    b[n / 2] ^= 1;
    fs::write(pack, b).unwrap();
    let out = fx.restore(&snap, &fx.path("t"), &[]);
    out.failed();
    let cause = "authentication failed";
    assert_eq!(
        out.stderr.matches(cause).count(),
        1,
        "cause repeated:\n{}",
        out.stderr
    );
}

#[test]
fn excludes_and_exclude_files_leave_paths_out() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("keep.yaml"), b"keep");
    write_file(&src.join("kubelet.log"), b"log");
    write_file(&src.join("deep/er/audit.log"), b"log");
    write_file(&src.join("tmp/scratch/a"), b"scratch");
    write_file(&src.join("cache.db"), b"cache");
    let exfile = fx.path("excludes.txt");
    write_file(&exfile, b"# generated caches\ncache.db\n\n");
    let out = fx.wk(&[
        "--json",
        "backup",
        "--exclude",
        "*.log",
        "--exclude",
        &format!("{}/tmp/**", s(&src)),
        "--exclude-file",
        s(&exfile),
        s(&src),
    ]);
    out.ok();
    let snap = Fixture::snap_id(&out.json());
    let out = fx.wk(&["ls", &snap, s(&src)]);
    out.ok();
    let listed: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.strip_prefix(s(&src)).unwrap().to_string())
        .collect();
    assert!(listed.contains(&"/keep.yaml".to_string()), "{out}");
    assert!(listed.contains(&"/deep/er".to_string()), "{out}");
    for gone in [
        "/kubelet.log",
        "/deep/er/audit.log",
        "/tmp/scratch/a",
        "/cache.db",
    ] {
        assert!(
            !listed.contains(&gone.to_string()),
            "{gone} was not excluded\n{out}"
        );
    }
    // An invalid glob is an error, not a silently empty exclusion.
    fx.wk(&["backup", "--exclude", "a[", s(&src)]).failed();
}

#[test]
fn one_file_system_does_not_cross_mount_points() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("here.txt"), b"on the root fs");
    let mnt_dir = src.join("mounted");
    let Some(mnt) = SmallFs::mount(&mnt_dir) else {
        eprintln!("note: cannot mount a tmpfs here; skipping");
        return;
    };
    write_file(&mnt.dir.join("there.txt"), b"on another fs");
    let out = fx.wk(&["--json", "backup", "-x", s(&src)]);
    out.ok();
    let snap = Fixture::snap_id(&out.json());
    let out = fx.wk(&["ls", &snap, s(&src)]);
    out.ok();
    assert!(out.stdout.contains("here.txt"), "{out}");
    // The mount point itself is recorded (as an empty directory), its content is not.
    assert!(out.stdout.lines().any(|l| l == s(&mnt.dir)), "{out}");
    assert!(!out.stdout.contains("there.txt"), "{out}");
    // Without -x it is crossed.
    let out = fx.wk(&["--json", "backup", s(&src)]);
    out.ok();
    let snap = Fixture::snap_id(&out.json());
    let out = fx.wk(&["ls", &snap, s(&src)]);
    assert!(out.stdout.contains("there.txt"), "{out}");
    drop(mnt);
}

fn latest_follows_host_and_tag_filters(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("src");
    write_file(&src.join("who"), b"master-0");
    let a = fx.wk(&[
        "--json",
        "backup",
        "--host",
        "master-0",
        "--tag",
        "daily",
        s(&src),
    ]);
    a.ok();
    write_file(&src.join("who"), b"master-1");
    let b = fx.wk(&[
        "--json",
        "backup",
        "--host",
        "master-1",
        "--tag",
        "hourly",
        s(&src),
    ]);
    b.ok();
    let who = format!("{}/who", s(&src));
    let cat = |extra: &[&str]| {
        let mut args = vec!["cat", "latest", who.as_str()];
        args.extend_from_slice(extra);
        let out = fx.id(&args);
        out.ok();
        out.stdout
    };
    assert_eq!(cat(&[]), "master-1");
    assert_eq!(cat(&["--host", "master-0"]), "master-0");
    assert_eq!(cat(&["--tag", "daily"]), "master-0");
    assert_eq!(cat(&["--tag", "hourly"]), "master-1");
    fx.id(&["cat", "latest", &who, "--host", "master-2"])
        .failed()
        .stderr_has(&["no snapshot matches"]);
    let target = fx.path("t");
    fx.id(&[
        "restore",
        "latest",
        "--host",
        "master-0",
        "--target",
        s(&target),
    ])
    .ok();
    assert_eq!(
        fs::read(Fixture::restored(&target, &src).join("who")).unwrap(),
        b"master-0"
    );
}
backend_tests!(latest_follows_host_and_tag_filters);

fn ambiguous_snapshot_prefix_is_refused(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("src");
    let mut seen: std::collections::HashMap<char, String> = Default::default();
    // Pigeonhole: at most 17 snapshots until two share their first hex digit.
    let (first, other) = loop {
        write_file(&src.join("n"), format!("{}", seen.len()).as_bytes());
        let id = Fixture::snap_id(&fx.backup(&[&src]));
        let c = id.chars().next().unwrap();
        if let Some(prev) = seen.insert(c, id.clone()) {
            break (prev, id);
        }
        assert!(seen.len() <= 16);
    };
    let prefix = &first[..1];
    fx.wk(&["ls", prefix]).failed().stderr_has(&["ambiguous"]);
    // Enough digits resolve each.
    let common = first
        .chars()
        .zip(other.chars())
        .take_while(|(a, b)| a == b)
        .count();
    fx.wk(&["ls", &first[..common + 1]]).ok();
    fx.wk(&["ls", &other[..common + 1]]).ok();
    fx.wk(&["ls", "not-hex!"])
        .failed()
        .stderr_has(&["no snapshot matches"]);
}
backend_tests!(ambiguous_snapshot_prefix_is_refused);

#[test]
fn full_repository_disk_fails_the_backup_and_saves_no_snapshot() {
    let fx = Fixture::new();
    let Some(mnt) = SmallFs::mount(&fx.path("small-repo")) else {
        eprintln!("note: cannot mount a tmpfs here; skipping");
        return;
    };
    let repo = mnt.dir.join("repo");
    cairn(&["-r", s(&repo), "init", "--recipient", &fx.recipient], &[]).ok();
    let src = fx.path("src");
    write_file(&src.join("big.bin"), &random_bytes(81, 5_000_000));
    let out = cairn(
        &[
            "-r",
            s(&repo),
            "-i",
            s(&fx.identity),
            "--json",
            "backup",
            s(&src),
        ],
        &[],
    );
    out.code_is(1).stderr_has(&["No space left"]);
    assert!(files_below(&repo.join("snapshots")).is_empty());
    let tmp: Vec<_> = files_below(&repo)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect();
    assert!(tmp.is_empty(), "temporary objects left: {tmp:?}");
    // A disk already full when a pack starts: the error is the storage's, in words (age
    // wraps a failed header write in a message of its own).
    let small = fx.path("small");
    write_file(&small.join("f"), b"fits");
    let filler = mnt.dir.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let out = cairn(
        &["-r", s(&repo), "-i", s(&fx.identity), "backup", s(&small)],
        &[],
    );
    out.code_is(1).stderr_has(&["No space left on device"]);
    assert!(
        !out.stderr.contains("IoError") && !out.stderr.contains("Custom {"),
        "{out}"
    );
    std::fs::remove_file(&filler).unwrap();
    // The repository is still usable once there is room: a small backup works.
    cairn(
        &["-r", s(&repo), "-i", s(&fx.identity), "backup", s(&small)],
        &[],
    )
    .ok();
    cairn(&["-r", s(&repo), "-i", s(&fx.identity), "snapshots"], &[]).ok();
    drop(mnt);
}

#[test]
fn sockets_are_recorded_and_reported_as_skipped_on_restore() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("f"), b"f");
    let _listener = std::os::unix::net::UnixListener::bind(src.join("api.sock")).unwrap();
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let out = fx.wk(&["--json", "ls", &snap, &format!("{}/api.sock", s(&src))]);
    out.ok();
    assert_eq!(out.json()[0]["type"], "socket");
    let target = fx.path("t");
    let out = fx.restore(&snap, &target, &[]);
    out.ok();
    assert!(out.stdout.contains("api.sock"), "skip not reported\n{out}");
    let restored = Fixture::restored(&target, &src);
    assert!(restored.join("f").is_file());
    assert!(fs::symlink_metadata(restored.join("api.sock")).is_err());
    let out = fx.id(&["--json", "restore", &snap, "--target", s(&fx.path("t2"))]);
    out.ok();
    let j = out.json();
    assert!(
        j["report"]["skipped"].to_string().contains("api.sock"),
        "{out}"
    );
}

#[test]
fn init_refuses_a_directory_that_holds_other_files() {
    let fx = Fixture::new();
    let dir = fx.path("not-empty");
    write_file(&dir.join("notes.txt"), b"someone else's");
    let out = cairn(&["-r", s(&dir), "init", "--recipient", &fx.recipient], &[]);
    out.code_is(2).stderr_has(&["not empty", "notes.txt"]);
    assert!(!dir.join("config").exists());
    // A new directory, an empty one and one with only lost+found are fine.
    let empty = fx.path("empty");
    fs::create_dir_all(empty.join("lost+found")).unwrap();
    cairn(
        &["-r", s(&empty), "init", "--recipient", &fx.recipient],
        &[],
    )
    .ok();
}
