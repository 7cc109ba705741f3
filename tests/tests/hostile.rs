//! A malicious repository (or a prepared restore target) must not make restore write outside
//! its target. Repositories are crafted with the cairn-format crate and the repository's own
//! write key, as someone holding the storage and a stolen write key could.

use cairn_e2e::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

/// A restore area: `work/target` is restored into; `work/outside` and `work` itself must stay
/// as they were.
struct Area {
    _tmp: Scratch,
    work: PathBuf,
    target: PathBuf,
    outside: PathBuf,
}

impl Area {
    fn new() -> Area {
        let tmp = scratch();
        let work = tmp.path().to_path_buf();
        let target = work.join("target");
        let outside = work.join("outside");
        fs::create_dir_all(&outside).unwrap();
        Area {
            _tmp: tmp,
            work,
            target,
            outside,
        }
    }

    /// Everything in `work` that is not in the target (or the empty `outside` dir).
    #[track_caller]
    fn assert_nothing_outside(&self) {
        let mut names: Vec<String> = fs::read_dir(&self.work)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.retain(|n| n != "target" && n != "outside");
        assert!(
            names.is_empty(),
            "restore wrote outside its target: {names:?}"
        );
        let inside: Vec<_> = fs::read_dir(&self.outside).unwrap().collect();
        assert!(
            inside.is_empty(),
            "restore wrote into {}",
            self.outside.display()
        );
    }
}

/// A crafted snapshot with a single-file payload, returning the data blob and its id.
fn payload(c: &Crafter) -> (Vec<u8>, cairn_format::Id) {
    let data = b"pwned by a hostile repository\n".to_vec();
    let id = c.blob_id(&data);
    (data, id)
}

fn restore_crafted(fx: &Fixture, snap: &str, area: &Area, extra: &[&str]) -> Output {
    let out = fx.restore(snap, &area.target, extra);
    area.assert_nothing_outside();
    out
}

#[test]
fn dotdot_entry_is_refused_at_any_depth() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let (data, did) = payload(&c);
    let len = data.len() as u64;

    // Root: ".." (a directory) holding "escaped.txt" → would write work/escaped.txt.
    let leaf = raw_tree(vec![file_node(b"escaped.txt", vec![did], len)]);
    let root = raw_tree(vec![dir_node(b"..", c.blob_id(&leaf))]);
    let snap = c.inject_snapshot(&root, vec![leaf.clone()], vec![data.clone()]);
    let area = Area::new();
    let out = restore_crafted(&fx, &snap, &area, &[]);
    out.failed().stderr_has(&["unsafe entry name"]);
    // ls with the write key refuses the tree too.
    fx.wk(&["ls", &snap])
        .failed()
        .stderr_has(&["unsafe entry name"]);

    // Nested: /d/../../escaped2.txt → work/escaped2.txt.
    let l3 = raw_tree(vec![file_node(b"escaped2.txt", vec![did], len)]);
    let l2 = raw_tree(vec![dir_node(b"..", c.blob_id(&l3))]);
    let l1 = raw_tree(vec![dir_node(b"..", c.blob_id(&l2))]);
    let root = raw_tree(vec![dir_node(b"d", c.blob_id(&l1))]);
    let snap = c.inject_snapshot(&root, vec![l3, l2, l1], vec![data.clone()]);
    let area = Area::new();
    let out = restore_crafted(&fx, &snap, &area, &[]);
    out.failed().stderr_has(&["unsafe entry name"]);
    // A "." entry would restore the directory over itself.
    let root = raw_tree(vec![file_node(b".", vec![did], len)]);
    let snap = c.inject_snapshot(&root, vec![], vec![data.clone()]);
    let area = Area::new();
    restore_crafted(&fx, &snap, &area, &[]).failed();
    // The same with --overwrite.
    let area = Area::new();
    restore_crafted(&fx, &snap, &area, &["--overwrite"]).failed();
}

#[test]
fn names_with_slashes_or_absolute_paths_are_refused() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let (data, did) = payload(&c);
    let len = data.len() as u64;
    let area = Area::new();
    for name in [
        b"../escaped-slash.txt".to_vec(),
        b"a/b".to_vec(),
        area.outside
            .join("absolute.txt")
            .as_os_str()
            .as_bytes()
            .to_vec(),
        b"nul\0byte".to_vec(),
        Vec::new(),
    ] {
        let root = raw_tree(vec![file_node(&name, vec![did], len)]);
        let snap = c.inject_snapshot(&root, vec![], vec![data.clone()]);
        let out = restore_crafted(&fx, &snap, &area, &["--overwrite"]);
        out.failed();
        assert!(
            out.stderr.contains("unsafe entry name") || out.stderr.contains("tree"),
            "{out}"
        );
    }
    assert!(files_below(&area.target).is_empty());
}

#[test]
fn symlink_then_directory_of_the_same_name_is_refused() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let (data, did) = payload(&c);
    let area = Area::new();
    // evil -> outside, then a directory "evil" with a file: the classic tar escape. The tree
    // decoder rejects the duplicate name.
    let sub = raw_tree(vec![file_node(b"pwned.txt", vec![did], data.len() as u64)]);
    let root = raw_tree(vec![
        symlink_node(b"evil", area.outside.as_os_str().as_bytes()),
        dir_node(b"evil", c.blob_id(&sub)),
    ]);
    let snap = c.inject_snapshot(&root, vec![sub.clone()], vec![data.clone()]);
    let out = restore_crafted(&fx, &snap, &area, &[]);
    out.failed().stderr_has(&["not strictly sorted"]);
    restore_crafted(&fx, &snap, &area, &["--overwrite"]).failed();

    // Unsorted entries are refused as well.
    let root = raw_tree(vec![
        file_node(b"b", vec![did], data.len() as u64),
        file_node(b"a", vec![did], data.len() as u64),
    ]);
    let snap = c.inject_snapshot(&root, vec![], vec![data.clone()]);
    restore_crafted(&fx, &snap, &area, &[])
        .failed()
        .stderr_has(&["not strictly sorted"]);
    assert!(!area.target.join("b").exists() && !area.target.join("a").exists());
}

#[test]
fn a_valid_symlink_from_one_snapshot_is_not_followed_by_the_next() {
    // Each tree is valid on its own: snapshot 1 has the symlink evil -> outside, snapshot 2 a
    // directory evil/ with a file. Restoring both into the same target must not write through
    // the symlink, with or without --overwrite.
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let (data, did) = payload(&c);
    let area = Area::new();
    let root1 = raw_tree(vec![symlink_node(
        b"evil",
        area.outside.as_os_str().as_bytes(),
    )]);
    let snap1 = c.inject_snapshot(&root1, vec![], vec![]);
    let sub = raw_tree(vec![file_node(b"pwned.txt", vec![did], data.len() as u64)]);
    let root2 = raw_tree(vec![dir_node(b"evil", c.blob_id(&sub))]);
    let snap2 = c.inject_snapshot(&root2, vec![sub], vec![data]);

    restore_crafted(&fx, &snap1, &area, &[]).ok();
    assert_eq!(
        fs::read_link(area.target.join("evil")).unwrap(),
        area.outside
    );
    for extra in [&[][..], &["--overwrite"][..]] {
        let out = restore_crafted(&fx, &snap2, &area, extra);
        out.failed().stderr_has(&["symlink"]);
    }
    // The symlink is still there, untouched.
    assert_eq!(
        fs::read_link(area.target.join("evil")).unwrap(),
        area.outside
    );
}

#[test]
fn existing_symlink_in_target_where_snapshot_has_a_directory_is_refused() {
    // An honest snapshot of a real tree; the target was prepared with target/<first component>
    // -> outside (e.g. target/tmp -> /somewhere).
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("etc/kubernetes/admin.conf"), b"admin");
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let first = src.iter().nth(1).unwrap().to_owned(); // "tmp" for /tmp/…
    for extra in [&[][..], &["--overwrite"][..]] {
        let area = Area::new();
        fs::create_dir_all(&area.target).unwrap();
        symlink(&area.outside, area.target.join(&first)).unwrap();
        let out = restore_crafted(&fx, &snap, &area, extra);
        out.failed().stderr_has(&["symlink"]);
        // Deeper: the symlink is at the backed-up directory itself.
        let area = Area::new();
        let restored = Fixture::restored(&area.target, &src);
        fs::create_dir_all(restored.parent().unwrap()).unwrap();
        symlink(&area.outside, &restored).unwrap();
        let out = restore_crafted(&fx, &snap, &area, extra);
        out.failed().stderr_has(&["symlink"]);
    }
}

#[test]
fn overwrite_replaces_a_symlinked_file_instead_of_writing_through_it() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("kubelet.conf"), b"restored content\n");
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let area = Area::new();
    let victim = area.outside.join("victim");
    let restored = Fixture::restored(&area.target, &src);
    fs::create_dir_all(&restored).unwrap();
    symlink(&victim, restored.join("kubelet.conf")).unwrap();
    write_file(&victim, b"victim\n");

    // Without --overwrite: refused, nothing touched.
    let out = fx.restore(&snap, &area.target, &[]);
    out.failed().stderr_has(&["already exists"]);
    assert_eq!(fs::read(&victim).unwrap(), b"victim\n");
    // With --overwrite: the symlink itself is replaced by the file.
    fx.restore(&snap, &area.target, &["--overwrite"]).ok();
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"victim\n",
        "wrote through a symlink"
    );
    let m = fs::symlink_metadata(restored.join("kubelet.conf")).unwrap();
    assert!(m.is_file());
    assert_eq!(
        fs::read(restored.join("kubelet.conf")).unwrap(),
        b"restored content\n"
    );
}

#[test]
fn recorded_size_larger_than_content_fails_without_leftovers() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let (data, did) = payload(&c);
    let area = Area::new();
    // Size says 1 TB; content is 30 bytes. Restore must check and refuse, leaving no file.
    let root = raw_tree(vec![file_node(b"liar.bin", vec![did], 1 << 40)]);
    let snap = c.inject_snapshot(&root, vec![], vec![data.clone()]);
    let out = restore_crafted(&fx, &snap, &area, &[]);
    out.failed().stderr_has(&["liar.bin", "damaged"]);
    assert!(
        files_below(&area.target).is_empty(),
        "left behind: {:?}",
        files_below(&area.target)
    );
    // Content that is not in any index.
    let ghost = c.blob_id(b"never stored");
    let root = raw_tree(vec![file_node(b"ghost.bin", vec![ghost], 12)]);
    let snap = c.inject_snapshot(&root, vec![], vec![]);
    let out = restore_crafted(&fx, &snap, &area, &[]);
    out.failed().stderr_has(&["not in the repository index"]);
    assert!(files_below(&area.target).is_empty());
}

#[test]
fn crafted_snapshot_helper_produces_restorable_snapshots() {
    // The crafting helper itself: a well-formed crafted tree restores, so the refusals above
    // come from the hostile parts, not from a broken helper.
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let (data, did) = payload(&c);
    let sub = raw_tree(vec![file_node(b"inner.txt", vec![did], data.len() as u64)]);
    let root = raw_tree(vec![
        dir_node(b"dir", c.blob_id(&sub)),
        file_node(b"file.txt", vec![did, did], 2 * data.len() as u64),
        symlink_node(b"link", b"dir/inner.txt"),
    ]);
    let snap = c.inject_snapshot(&root, vec![sub], vec![data.clone()]);
    let area = Area::new();
    restore_crafted(&fx, &snap, &area, &[]).ok();
    assert_eq!(fs::read(area.target.join("dir/inner.txt")).unwrap(), data);
    assert_eq!(
        fs::read(area.target.join("file.txt")).unwrap(),
        [data.clone(), data.clone()].concat()
    );
    assert_eq!(fs::read(area.target.join("link")).unwrap(), data);
    let out = fx.wk(&["--json", "snapshots"]);
    out.ok();
    assert_eq!(out.json()[0]["host"], "crafted");
}

/// Snapshot fields are the writer's text: a planted host or path holding terminal
/// controls is shown escaped, never sent to the terminal as they are.
#[test]
fn terminal_controls_in_snapshot_fields_are_escaped() {
    use cairn_format::snapshot::{Snapshot, SnapshotStats, SourceKind};
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let (data, did) = payload(&c);
    let root = raw_tree(vec![file_node(b"f", vec![did], data.len() as u64)]);
    c.inject_snapshot(&root, vec![], vec![data]);
    // ESC and BEL, which JSON escapes, and DEL and a C1 control, which it leaves as they are;
    // and a newline, which would start a line of the attacker's.
    let evil = "esc\u{1b}]0;pwned\u{7}\u{1b}[2J\u{7f}\u{9b}2J\nhint: all is well";
    let snap = Snapshot {
        time_ns: 1_760_000_000_000_000_000,
        host: evil.into(),
        username: "mallory".into(),
        source: SourceKind::Paths,
        paths: vec![format!("/{evil}")],
        tags: vec!["crafted".into()],
        tree: c.blob_id(&root),
        parent: None,
        stats: SnapshotStats::default(),
        program: "crafted".into(),
        facts: Vec::new(),
    };
    c.put_meta("snapshots", &snap.encode());
    let out = fx.wk(&["snapshots"]);
    out.ok();
    assert!(
        !out.stdout.contains(['\u{1b}', '\u{7}', '\u{7f}', '\u{9b}']),
        "raw control characters on stdout: {:?}",
        out.stdout
    );
    assert!(out.stdout.contains("$'esc\\x1b]0;pwned"), "{}", out.stdout);
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("hint")),
        "{}",
        out.stdout
    );
    // JSON keeps the exact text, escaped as JSON escapes it.
    let out = fx.wk(&["--json", "snapshots"]);
    out.ok();
    assert!(out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["host"] == evil));
}

/// A file node that claims to be one of several hard links to the source inode `ino`.
fn linked(mut n: cairn_format::tree::Node, ino: u64) -> cairn_format::tree::Node {
    n.nlink = 2;
    n.device = 42;
    n.inode = ino;
    n
}

#[test]
fn hard_link_cannot_be_redirected_through_a_symlink_outside_the_target() {
    // Root (sorted bytewise): "x\u{FFFD}" -> outside (symlink), "x\xff"/f (file, inode 7),
    // "z" (second name of inode 7). Restore records the first name as the lossy string
    // "/x\u{FFFD}/f" and links "z" to it — resolving through the symlink to outside/f.
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let (data, did) = payload(&c);
    let len = data.len() as u64;
    let area = Area::new();
    let secret = area.outside.join("f");
    write_file(&secret, b"a file outside the target\n");
    let sub = raw_tree(vec![linked(file_node(b"f", vec![did], len), 7)]);
    let mut lossy_name = b"x".to_vec();
    lossy_name.extend("\u{FFFD}".as_bytes());
    let root = raw_tree(vec![
        symlink_node(&lossy_name, area.outside.as_os_str().as_bytes()),
        dir_node(b"x\xff", c.blob_id(&sub)),
        linked(file_node(b"z", vec![did], len), 7),
    ]);
    let snap = c.inject_snapshot(&root, vec![sub], vec![data.clone()]);
    let out = fx.restore(&snap, &area.target, &[]);
    eprintln!("{out}");
    let z = area.target.join("z");
    if let Ok(m) = fs::symlink_metadata(&z) {
        use std::os::unix::fs::MetadataExt;
        let outside_ino = fs::metadata(&secret).unwrap().ino();
        assert_ne!(
            m.ino(),
            outside_ino,
            "target/z is a hard link to {} (outside the target)",
            secret.display()
        );
        assert_eq!(
            fs::read(&z).unwrap(),
            data,
            "target/z has the wrong content"
        );
    }
    assert_eq!(fs::read(&secret).unwrap(), b"a file outside the target\n");
}

/// A crafted snapshot whose root is `depth` nested directories named "d"; returns its id.
fn deep_snapshot(c: &Crafter, depth: usize) -> String {
    let mut trees = Vec::with_capacity(depth);
    let mut cur = raw_tree(vec![]);
    for _ in 0..depth {
        let next = raw_tree(vec![dir_node(b"d", c.blob_id(&cur))]);
        trees.push(cur);
        cur = next;
    }
    c.inject_snapshot(&cur, trees, vec![])
}

/// Removes a directory with `rm -rf` when dropped (std's remove_dir_all, used by TempDir,
/// holds one descriptor per level and gives up on very deep trees).
struct RmRf(PathBuf);

impl Drop for RmRf {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn nesting_beyond_the_depth_limit_is_refused_by_ls() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let snap = deep_snapshot(&c, 5000);
    fx.wk(&["ls", &snap]).failed().stderr_has(&["deeper than"]);
}

#[test]
fn deep_nesting_does_not_crash_restore() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let snap = deep_snapshot(&c, 4000);
    let area = Area::new();
    let _cleanup = RmRf(area.target.clone());
    // Either restored or refused, but never a crash (the helper fails on a signal).
    let _ = fx.restore(&snap, &area.target, &[]);
    area.assert_nothing_outside();
}

#[test]
fn diff_refuses_nesting_beyond_the_depth_limit() {
    let fx = Fixture::new();
    let c = Crafter::new(&fx);
    let deep = deep_snapshot(&c, 20_000);
    let empty = c.inject_snapshot(&raw_tree(vec![]), vec![], vec![]);
    fx.wk(&["--json", "diff", &empty, &deep])
        .failed()
        .stderr_has(&["deeper than"]);
}

/// A write-key holder (a compromised host) adds a key object with an extra master recipient
/// of its own. Every key object the identity opens must agree, so exporting a new write key
/// is refused and names both objects, instead of quietly encrypting later backups to the
/// attacker.
#[test]
fn forged_key_object_does_not_redirect_future_backups() {
    use cairn_format::envelope;
    let fx = Fixture::new();
    // The attacker: a compromised control-plane host with the write key and write access to
    // the storage, plus an age identity of its own.
    let attacker_id = fx.path("attacker.txt");
    let out = cairn(&["key", "generate", "-o", s(&attacker_id)], &[]);
    out.ok();
    let attacker_recipient = out.stdout.trim().to_string();
    let mut forged = fx.write_key_record();
    forged.master_recipients.push(attacker_recipient);
    // Encrypted to the master recipients the write key lists (they are public keys); named
    // by blake3 like any object, and sorted before the genuine key object.
    let genuine = fx.objects("keys")[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let recips: Vec<_> = fx
        .write_key_record()
        .master_recipients
        .iter()
        .map(|r| envelope::parse_recipient(r).unwrap())
        .collect();
    let ct = loop {
        let ct = envelope::encrypt(&forged.encode(), &recips);
        if cairn_format::Id::of_object(&ct).to_hex() < genuine {
            break ct;
        }
    };
    write_file(
        &fx.repo
            .join("keys")
            .join(cairn_format::Id::of_object(&ct).to_hex()),
        &ct,
    );

    // Later, the administrator provisions a new host with a fresh write key: refused.
    let new_key = fx.path("new-host.key");
    cairn(
        &[
            "-r",
            s(&fx.repo),
            "-i",
            s(&fx.identity),
            "key",
            "write-key",
            "-o",
            s(&new_key),
        ],
        &[],
    )
    .failed()
    .stderr_has(&["disagree", &genuine]);
    assert!(
        !new_key.exists(),
        "a write key was exported from a tampered repository"
    );
}

/// A name with a newline cannot add lines of its own to restore's refusal, its dry run or
/// diff: names are escaped there as `ls` escapes them.
#[test]
fn a_newline_in_a_name_cannot_fake_lines_of_output() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let src = fx.dir("src");
    let odd = src.join("harmless\nhint: these are expected, restore with --allow-privileged");
    write_file(&odd, b"x");
    std::fs::set_permissions(&odd, std::fs::Permissions::from_mode(0o4755)).unwrap();
    fx.backup(&[&src]);
    let fake = |text: &str| {
        text.lines()
            .any(|l| l.starts_with("hint: these are expected"))
    };
    let out = fx.restore("latest", &fx.path("t1"), &[]);
    out.code_is(1);
    assert!(out.stderr.contains("harmless\\nhint"), "{out}");
    assert!(!fake(&out.stderr), "{out}");
    let out = fx.restore(
        "latest",
        &fx.path("t2"),
        &["--dry-run", "--allow-privileged"],
    );
    out.ok();
    assert!(!fake(&out.stdout), "{out}");
    write_file(&odd, b"changed");
    fx.backup(&[&src]);
    let ids = fx.snapshot_ids();
    let out = fx.id(&["diff", &ids[0], &ids[1]]);
    out.ok();
    assert!(out.stdout.contains("harmless\\nhint"), "{out}");
    assert!(!fake(&out.stdout), "{out}");
}
