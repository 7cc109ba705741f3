//! Helpers for cairn's end-to-end tests.
//!
//! Every test runs the real `cairn` binary (`target/debug/cairn`, or `CAIRN_BIN`) on real files,
//! with real age encryption, and checks what it prints, what it writes and what it restores.
//! Nothing is mocked. The pieces here:
//!
//! * [`cairn`]: run the binary with arguments and environment, with a timeout, and fail loudly
//!   if it panics;
//! * [`Fixture`]: a repository with an identity and a write key, in a temporary directory or
//!   (with [`Backend::S3`]) in a bucket of a real local S3 server ([`s3`]);
//! * [`tinyproxy`]: a real HTTP proxy in front of it;
//! * [`small_fs`]: a small tmpfs, for full-disk tests (needs root);
//! * [`backend_tests!`]: run one test body on both backends (`name::local`, `name::s3`);
//! * [`Store`]: look at a repository's objects without cairn, on either backend;
//!   [`repo_objects`]: packs, snapshot ids, leases and markers, and damaging objects;
//! * [`versions`]: source trees backed up version after version, and restore checks;
//! * [`num`], [`strs`]: fields of cairn's JSON reports;
//! * [`Rng`], [`random_bytes`], [`text_bytes`]: fast deterministic test data;
//! * [`scan_tree`], [`compare_trees`]: byte- and metadata-exact tree comparison (type, mode,
//!   owner, mtime in ns, size, content, symlink target, xattrs, device numbers, hard links);
//! * [`Crafter`]: build hostile repository objects (trees, packs, index, snapshots) with the
//!   `cairn-format` crate and the repository's own keys.

use cairn_format::envelope;
use cairn_format::frame::Compression;
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::keys::KeyRecord;
use cairn_format::pack::{PackBuilder, PackKind};
use cairn_format::record::{self, RecordKind};
use cairn_format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::Id;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;
pub mod background;
pub mod etcd;
pub mod jobs;
pub mod kube;
pub mod repo_objects;
pub mod rss;
pub mod s3;
pub mod small_fs;
pub mod tinyproxy;
pub mod versions;
pub mod worm;

/// Extra environment for a cairn run, owned.
pub type Env = Vec<(String, std::ffi::OsString)>;

/// `env` as the borrowed pairs [`cairn`] takes.
pub fn env_refs(env: &Env) -> Vec<(&str, &OsStr)> {
    env.iter()
        .map(|(k, v)| (k.as_str(), v.as_os_str()))
        .collect()
}

/// A temporary directory named by its canonical path (backups record real paths, so a
/// symlinked `$TMPDIR` must not make restored paths differ from source paths).
pub struct Scratch {
    _tmp: TempDir,
    root: PathBuf,
}

impl Scratch {
    /// The canonical path of the directory.
    pub fn path(&self) -> &Path {
        &self.root
    }
}

/// A fresh [`Scratch`] directory, removed on drop.
pub fn scratch() -> Scratch {
    let tmp = tempfile::Builder::new()
        .prefix("cairn-e2e-")
        .tempdir()
        .expect("tempdir");
    let root = tmp.path().canonicalize().expect("canonical tempdir");
    Scratch { _tmp: tmp, root }
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// The `cairn` binary under test: `$CAIRN_BIN`, or `target/debug/cairn` next to this test
/// executable's `deps/` directory.
pub fn cairn_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_cairn_bin).clone()
}

fn find_cairn_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "CAIRN_BIN={} does not name a file",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test>-<hash> → target/debug/cairn
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("test executable has a parent directory");
    let bin = dir.join("cairn");
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build -p cairn` first (or set CAIRN_BIN)",
        bin.display()
    );
    // `cargo test` does not rebuild another package's binary: refuse to test a stale one.
    let built = fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    if let (Some(built), Some((newest, path))) = (built, newest_source(workspace)) {
        assert!(
            newest <= built,
            "{} is older than {}: run `cargo build -p cairn` first (or set CAIRN_BIN)",
            bin.display(),
            path.display()
        );
    }
    bin
}

/// The most recently modified source file of the crates the binary is built from.
fn newest_source(workspace: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut files = Vec::new();
    for krate in ["cli", "store", "format"] {
        collect_files(&workspace.join(krate).join("src"), &mut files);
        files.push(workspace.join(krate).join("Cargo.toml"));
    }
    files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs" || e == "toml"))
        .filter_map(|f| Some((fs::metadata(&f).ok()?.modified().ok()?, f)))
        .max()
}

/// What one run of cairn produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// stdout, lossily decoded.
    pub stdout: String,
    /// stdout, raw (for `cat`).
    pub stdout_bytes: Vec<u8>,
    /// stderr, lossily decoded.
    pub stderr: String,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Output {
    /// Panic with the whole output unless the exit code is 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success\n{self}");
        self
    }

    /// Panic unless the exit code is `code`.
    #[track_caller]
    pub fn code_is(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// Panic unless the command failed (non-zero exit).
    #[track_caller]
    pub fn failed(&self) -> &Self {
        assert_ne!(self.code, 0, "expected failure\n{self}");
        self
    }

    /// Panic unless stderr contains every one of `needles` (case-insensitive).
    #[track_caller]
    pub fn stderr_has(&self, needles: &[&str]) -> &Self {
        let e = self.stderr.to_lowercase();
        for n in needles {
            assert!(
                e.contains(&n.to_lowercase()),
                "stderr should mention {n:?}\n{self}"
            );
        }
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            truncate(&self.stdout, 8000),
            truncate(&self.stderr, 8000)
        )
    }
}

/// The number `v[key]` of a JSON report; panics if it is not one.
#[track_caller]
pub fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

/// The strings of the array `v[key]` of a JSON report; panics if it is not an array of them.
#[track_caller]
pub fn strs(v: &serde_json::Value, key: &str) -> BTreeSet<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array in {v:#}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Longest a single cairn command may run before the test fails (a blocked read of a FIFO, a
/// deadlock).
pub const TIMEOUT: Duration = Duration::from_secs(240);

/// Run cairn with `args` and extra environment `env`. The test's own `CAIRN_*`, `ETCDCTL_*`
/// and `AWS_*` variables are not passed on, so only what a test sets is seen (later entries of
/// `env` win over earlier ones). Panics if cairn panics, is killed by a
/// signal, or runs longer than [`TIMEOUT`].
pub fn cairn<A: AsRef<OsStr>>(args: &[A], env: &[(&str, &OsStr)]) -> Output {
    run_cairn(None, args, env)
}

/// [`cairn`] with the working directory `dir` (for relative repository paths).
pub fn cairn_in<A: AsRef<OsStr>>(dir: &Path, args: &[A], env: &[(&str, &OsStr)]) -> Output {
    run_cairn(Some(dir), args, env)
}

fn run_cairn<A: AsRef<OsStr>>(dir: Option<&Path>, args: &[A], env: &[(&str, &OsStr)]) -> Output {
    let bin = cairn_bin();
    let mut cmd = background::clean_command(&bin, env);
    cmd.args(args);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    run_captured(cmd, cmdline(&bin, args))
}

/// `bin args…` as one line, for messages.
pub fn cmdline<A: AsRef<OsStr>>(bin: &Path, args: &[A]) -> String {
    std::iter::once(bin.display().to_string())
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd` (described by `cmdline`) with piped output as [`cairn`] does.
pub fn run_captured(mut cmd: Command, cmdline: String) -> Output {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmdline}: {e}"));
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for cairn") {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmdline} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout_bytes = t_out.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&t_err.join().expect("stderr reader")).into_owned();
    let out = Output {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr,
        cmdline,
    };
    assert!(
        !out.stderr.contains("panicked") && out.code != 101,
        "cairn panicked\n{out}"
    );
    assert!(
        status.code().is_some(),
        "cairn was killed by a signal\n{out}"
    );
    out
}

/// A path as &str (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// Run an external program; panics unless it succeeds. Returns stdout.
#[track_caller]
pub fn sh(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// A repository with its keys
// ---------------------------------------------------------------------------------------------

/// Where a test keeps its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A directory (`-r /tmp/…/repo`).
    Local,
    /// A bucket of this test binary's shared moto server ([`s3::shared`]):
    /// `-r s3://BUCKET/PREFIX`, endpoint and credentials in the environment.
    S3,
}

impl Backend {
    /// A new, empty repository location: `dir/name` (not created) for [`Backend::Local`], or
    /// `s3://<fresh bucket>/name` for [`Backend::S3`].
    pub fn fresh(self, dir: &Path, name: &str) -> Store {
        match self {
            Backend::Local => Store::Dir(dir.join(name)),
            Backend::S3 => Store::S3 {
                bucket: s3::fresh_bucket(name),
                prefix: name.to_string(),
            },
        }
    }
}

/// A repository location, and a way to look at its objects without cairn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A directory.
    Dir(PathBuf),
    /// A prefix (without slashes at either end; may be empty) in a bucket of [`s3::shared`].
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix.
        prefix: String,
    },
}

impl Store {
    /// What to give cairn as `--repo`: the directory, or `s3://BUCKET/PREFIX`.
    pub fn location(&self) -> String {
        match self {
            Store::Dir(d) => s(d).to_string(),
            Store::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Store::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// The environment cairn needs to reach it (nothing for a directory).
    pub fn env(&self) -> Env {
        match self {
            Store::Dir(_) => Env::new(),
            Store::S3 { .. } => s3::shared().env(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Dir(_) => Backend::Local,
            Store::S3 { .. } => Backend::S3,
        }
    }

    /// The object key of `name` below `prefix` in a bucket.
    pub(crate) fn key(prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        }
    }

    /// Every object below `sub` (`""`: all), as `(name relative to the repository, size)`,
    /// sorted, without temporary files of the local backend.
    pub fn list(&self, sub: &str) -> Vec<(String, u64)> {
        match self {
            Store::Dir(d) => {
                let mut out: Vec<(String, u64)> = files_below(&d.join(sub))
                    .into_iter()
                    .filter(|p| !is_temporary(p))
                    .map(|p| {
                        let size = fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
                        let rel = p.strip_prefix(d).expect("below the repository");
                        (s(rel).to_string(), size)
                    })
                    .collect();
                out.sort();
                out
            }
            Store::S3 { bucket, prefix } => {
                let sub = sub.trim_end_matches('/');
                let dir = match (prefix.is_empty(), sub.is_empty()) {
                    (true, true) => String::new(),
                    (false, true) => format!("{prefix}/"),
                    _ => format!("{}/", Store::key(prefix, sub)),
                };
                let strip = if prefix.is_empty() {
                    0
                } else {
                    prefix.len() + 1
                };
                s3::shared()
                    .list(bucket, &dir)
                    .into_iter()
                    .map(|(k, size)| (k[strip..].to_string(), size))
                    .collect()
            }
        }
    }

    /// The names of every object below `sub` (see [`Store::list`]).
    pub fn names(&self, sub: &str) -> Vec<String> {
        self.list(sub).into_iter().map(|(n, _)| n).collect()
    }

    /// Total size of every object.
    pub fn bytes(&self) -> u64 {
        self.list("").iter().map(|(_, n)| n).sum()
    }

    /// The bytes of object `name`, None if it does not exist.
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        match self {
            Store::Dir(d) => fs::read(d.join(name)).ok(),
            Store::S3 { bucket, prefix } => s3::shared().get(bucket, &Store::key(prefix, name)),
        }
    }

    /// Replace (or create) object `name` (parent directories too).
    pub fn write(&self, name: &str, bytes: &[u8]) {
        match self {
            Store::Dir(d) => write_file(&d.join(name), bytes),
            Store::S3 { bucket, prefix } => {
                s3::shared().put(bucket, &Store::key(prefix, name), bytes)
            }
        }
    }

    /// True if object `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.read(name).is_some()
    }

    /// Every object with its bytes, to compare a repository before and after.
    pub fn contents(&self) -> Vec<(String, Vec<u8>)> {
        self.names("")
            .into_iter()
            .map(|n| {
                let b = self.read(&n).unwrap_or_else(|| panic!("{n} vanished"));
                (n, b)
            })
            .collect()
    }
}

/// For each named function `fn name(backend: Backend)` of a test file, a module `name` with
/// the tests `local` and `s3` calling it with [`Backend::Local`] and [`Backend::S3`]
/// (`cargo test name::s3` runs one).
///
/// ```ignore
/// fn backup_restores(backend: Backend) {
///     let fx = Fixture::on(backend);
///     …
/// }
/// backend_tests!(backup_restores);
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn local() {
                    super::$name($crate::Backend::Local)
                }
                #[test]
                fn s3() {
                    super::$name($crate::Backend::S3)
                }
            }
        )+
    };
}

/// A fresh repository, created the way the README says: an identity from
/// `cairn key generate`, `cairn init --recipient`, and a write key from
/// `cairn key write-key`. Keys and scratch files live in a temporary directory; the
/// repository too ([`Backend::Local`]) or in a fresh bucket of the shared S3 server
/// ([`Backend::S3`]).
pub struct Fixture {
    /// Holds everything local; removed on drop.
    pub tmp: Scratch,
    /// The repository location as cairn's `--repo` takes it: the directory for
    /// [`Backend::Local`], `s3://BUCKET/PREFIX` (only good as an argument) for
    /// [`Backend::S3`].
    pub repo: PathBuf,
    /// The repository's location and objects.
    pub store: Store,
    /// The identity file (full access).
    pub identity: PathBuf,
    /// The write key file.
    pub write_key: PathBuf,
    /// The identity's recipient (`age1…`).
    pub recipient: String,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// Create a local repository, identity and write key.
    pub fn new() -> Fixture {
        Fixture::on(Backend::Local)
    }

    /// Create the repository on `backend`, identity and write key.
    pub fn on(backend: Backend) -> Fixture {
        Fixture::on_with(backend, &[])
    }

    /// [`Fixture::on`] with extra `init` arguments (e.g. `--pack-size`).
    pub fn on_with(backend: Backend, init_args: &[&str]) -> Fixture {
        let tmp = scratch();
        let store = backend.fresh(tmp.path(), "repo");
        let repo = PathBuf::from(store.location());
        let identity = tmp.path().join("identity.txt");
        let write_key = tmp.path().join("write.key");
        let out = cairn(&["key", "generate", "-o", s(&identity)], &[]);
        out.ok();
        let recipient = out.stdout.trim().to_string();
        assert!(recipient.starts_with("age1"), "{out}");
        let fx = Fixture {
            tmp,
            repo,
            store,
            identity,
            write_key,
            recipient,
        };
        // Host-side retention allowed, as most tests forget and prune with the write key;
        // `policy.rs` tests the append-only default.
        let mut init = vec![
            "-r",
            s(&fx.repo),
            "init",
            "--recipient",
            &fx.recipient,
            "--allow-host-retention",
        ];
        init.extend_from_slice(init_args);
        fx.run(&init).ok();
        fx.id(&["key", "write-key", "-o", s(&fx.write_key)]).ok();
        fx
    }

    /// The backend the repository is on.
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// The environment cairn needs to reach the repository (S3 endpoint and credentials), and
    /// the fixture's own metadata cache directory ([`Fixture::cache`]).
    pub fn env(&self) -> Env {
        let mut env = self.store.env();
        env.push(("CAIRN_CACHE_DIR".into(), self.cache().into_os_string()));
        env
    }

    /// Where cairn caches the metadata of this fixture's repositories (created when needed).
    pub fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// A new, empty repository location next to this one, on the same backend.
    pub fn fresh_store(&self, name: &str) -> Store {
        self.backend().fresh(self.tmp.path(), name)
    }

    /// Run cairn with `args` as given and the backend's environment.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Run cairn with `args`, the backend's environment, then `extra` (which wins).
    pub fn run_env(&self, args: &[&str], extra: &[(&str, &OsStr)]) -> Output {
        let env = self.env();
        let mut all = env_refs(&env);
        all.extend_from_slice(extra);
        cairn(args, &all)
    }

    /// A new empty directory inside the fixture.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        fs::create_dir_all(&d).expect("mkdir");
        d
    }

    /// A path inside the fixture (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `-r REPO -i IDENTITY` and then `args`: cairn's arguments to run on this repository
    /// with the identity.
    pub fn id_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["-r", s(&self.repo), "-i", s(&self.identity)];
        a.extend_from_slice(args);
        a
    }

    /// `-r REPO -k WRITE_KEY` and then `args`: cairn's arguments to run on this repository
    /// with the write key.
    pub fn wk_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["-r", s(&self.repo), "-k", s(&self.write_key)];
        a.extend_from_slice(args);
        a
    }

    /// Run cairn on this repository with the identity.
    pub fn id(&self, args: &[&str]) -> Output {
        self.run(&self.id_args(args))
    }

    /// Run cairn on this repository with the write key.
    pub fn wk(&self, args: &[&str]) -> Output {
        self.wk_env(args, &[])
    }

    /// Run cairn on this repository with the write key and extra environment (which wins
    /// over the backend's, e.g. another `CAIRN_S3_ENDPOINT`).
    pub fn wk_env(&self, args: &[&str], extra: &[(&str, &OsStr)]) -> Output {
        self.run_env(&self.wk_args(args), extra)
    }

    /// Back up `paths` with the write key and `--json`; panics unless the exit code is 0.
    /// Returns the JSON report.
    #[track_caller]
    pub fn backup(&self, paths: &[&Path]) -> serde_json::Value {
        let mut a = vec!["--json", "backup"];
        a.extend(paths.iter().map(|p| s(p)));
        let out = self.wk(&a);
        out.ok();
        out.json()
    }

    /// Back up directory `d` holding three files of 4,000 random bytes (from `seed`): each is
    /// one blob, whose id a write-key holder can compute. Returns the directory, the files'
    /// contents and the snapshot.
    pub fn back_up_small_files(&self, seed: u64) -> (PathBuf, Vec<Vec<u8>>, String) {
        let d = self.path("d");
        let files: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(seed + i, 4_000)).collect();
        for (i, f) in files.iter().enumerate() {
            write_file(&d.join(format!("f{i}")), f);
        }
        let snap = Fixture::snap_id(&self.backup(&[&d]));
        (d, files, snap)
    }

    /// Snapshot id from a backup report.
    pub fn snap_id(report: &serde_json::Value) -> String {
        report["snapshot"]
            .as_str()
            .expect("backup report has a snapshot id")
            .to_string()
    }

    /// The ids of the repository's snapshots, oldest first (listed with the write key).
    pub fn snapshot_ids(&self) -> Vec<String> {
        self.wk(&["--json", "snapshots"])
            .json()
            .as_array()
            .expect("a JSON array of snapshots")
            .iter()
            .map(|s| s["id"].as_str().expect("an id").to_string())
            .collect()
    }

    /// Restore `snap` into `target` with the identity.
    pub fn restore(&self, snap: &str, target: &Path, extra: &[&str]) -> Output {
        let mut a = vec!["restore", snap, "--target", s(target)];
        a.extend_from_slice(extra);
        self.id(&a)
    }

    /// The write key record (holds the meta identity, chunk key and recipients).
    pub fn write_key_record(&self) -> KeyRecord {
        let text = fs::read_to_string(&self.write_key).expect("read write key");
        cairn_format::keys::write_key_from_text(&text).expect("parse write key")
    }

    /// Every object file below `sub` of a **local** repository (recursive, sorted), excluding
    /// temporary files. For either backend use [`Fixture::object_names`].
    pub fn objects(&self, sub: &str) -> Vec<PathBuf> {
        assert_eq!(
            self.backend(),
            Backend::Local,
            "Fixture::objects reads files: local repositories only (use object_names)"
        );
        let mut out = Vec::new();
        collect_files(&self.repo.join(sub), &mut out);
        out.retain(|p| !is_temporary(p));
        out.sort();
        out
    }

    /// The names (relative to the repository, e.g. `snapshots/ab…`) of every object below
    /// `sub`, on either backend.
    pub fn object_names(&self, sub: &str) -> Vec<String> {
        self.store.names(sub)
    }

    /// The name (last path component) of the object of `sub` that sorts first.
    pub fn lowest_name(&self, sub: &str) -> String {
        self.object_names(sub)
            .iter()
            .map(|n| n.rsplit('/').next().unwrap_or_default().to_string())
            .min()
            .unwrap_or_default()
    }

    /// Total bytes of every object in the repository.
    pub fn repo_bytes(&self) -> u64 {
        self.store.bytes()
    }

    /// Where a snapshot of the absolute path `src` is restored below `target`.
    pub fn restored(target: &Path, src: &Path) -> PathBuf {
        target.join(src.strip_prefix("/").expect("absolute source path"))
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let e = e.expect("read_dir entry");
        let ft = e.file_type().expect("file type");
        if ft.is_dir() {
            collect_files(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// Sum of the sizes of every file below `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    files
        .iter()
        .map(|f| fs::symlink_metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// True if `path` names a temporary file of the local backend (`.tmp-…`: an object being
/// written, renamed to its name once complete).
pub fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
}

/// Every temporary file (see [`is_temporary`]) below `dir`, sorted.
pub fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = files_below(dir);
    out.retain(|p| is_temporary(p));
    out
}

/// Every file below `dir`, recursively (no symlinks followed).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect_files(dir, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------------

/// xorshift64* — fast, deterministic, good enough to be incompressible for zstd.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// `len` incompressible bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// `len` compressible, YAML-like bytes from `seed` (every line differs a little, so chunks
/// differ too).
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 128);
    let words = [
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: kube-apiserver",
        "  namespace: openshift-kube-apiserver",
        "data:",
        "  config.yaml: |",
        "    servingInfo:",
        "      bindAddress: 0.0.0.0:6443",
        "    etcdClientInfo:",
    ];
    while v.len() < len {
        let r = rng.next_u64();
        v.extend_from_slice(words[(r % words.len() as u64) as usize].as_bytes());
        v.extend_from_slice(format!(" # {:x}\n", r >> 40).as_bytes());
    }
    v.truncate(len);
    v
}

/// Write `bytes` to `path`, creating parent directories.
pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir -p");
    }
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all(bytes).expect("write");
}

/// chmod (follows symlinks; do not use on symlinks).
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Set mtime (and atime) of `path` itself, not following symlinks, with nanoseconds.
pub fn set_mtime(path: &Path, sec: i64, nsec: u32) {
    use rustix::fs::{AtFlags, Timespec, Timestamps};
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Create a FIFO with exactly `mode` (the umask does not apply).
pub fn mkfifo(path: &Path, mode: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(mode),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
    chmod(path, mode);
}

/// Create a character device (needs root and a permissive device cgroup); false if refused.
pub fn mknod_char(path: &Path, major: u32, minor: u32) -> bool {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o640),
        rustix::fs::makedev(major, minor),
    )
    .is_ok()
}

/// True when the tests run as root (owners can be set and must come back).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Give every entry below (and including) `root` a distinct, nanosecond-precise mtime,
/// children before parents so directory times stick.
pub fn stamp_mtimes(root: &Path, base_sec: i64) {
    let mut all = Vec::new();
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        let m = fs::symlink_metadata(p).expect("lstat");
        if m.is_dir() {
            let mut names: Vec<_> = fs::read_dir(p)
                .expect("read_dir")
                .map(|e| e.expect("entry").path())
                .collect();
            names.sort();
            for n in names {
                walk(&n, out);
            }
        }
        out.push(p.to_path_buf());
    }
    walk(root, &mut all);
    for (i, p) in all.iter().enumerate() {
        set_mtime(
            p,
            base_sec + i as i64 * 3607,
            (123_456_789 + i as u32 * 1_000_003) % 1_000_000_000,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing trees
// ---------------------------------------------------------------------------------------------

/// Everything compared about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// `file`, `dir`, `symlink`, `fifo`, `char`, `block`, `socket`.
    pub kind: &'static str,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Size (files only; 0 otherwise).
    pub size: u64,
    /// blake3 of the content (files only).
    pub content: Option<String>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Extended attributes, by name.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Device number (devices only).
    pub rdev: u64,
    /// Link count (not directories).
    pub nlink: u64,
    /// Inode (not compared directly; used for hard links).
    pub ino: u64,
}

/// Scan `root` recursively: relative path (raw bytes, "" for the root) → entry.
pub fn scan_tree(root: &Path) -> BTreeMap<Vec<u8>, EntryInfo> {
    let mut out = BTreeMap::new();
    scan(root, Vec::new(), &mut out);
    out
}

fn scan(path: &Path, rel: Vec<u8>, out: &mut BTreeMap<Vec<u8>, EntryInfo>) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_socket() {
        "socket"
    } else {
        "file"
    };
    let content = (kind == "file").then(|| {
        let mut h = blake3::Hasher::new();
        let mut f = fs::File::open(path).expect("open for hashing");
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        h.finalize().to_hex().to_string()
    });
    let mut xattrs = BTreeMap::new();
    if let Ok(names) = xattr::list(path) {
        for n in names {
            if let Ok(Some(v)) = xattr::get(path, &n) {
                xattrs.insert(n.as_bytes().to_vec(), v);
            }
        }
    }
    let info = EntryInfo {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        size: if kind == "file" { m.len() } else { 0 },
        content,
        target: (kind == "symlink").then(|| {
            fs::read_link(path)
                .expect("readlink")
                .as_os_str()
                .as_bytes()
                .to_vec()
        }),
        xattrs,
        rdev: if kind == "char" || kind == "block" {
            m.rdev()
        } else {
            0
        },
        nlink: if kind == "dir" { 0 } else { m.nlink() },
        ino: m.ino(),
    };
    out.insert(rel.clone(), info);
    if kind == "dir" {
        for e in fs::read_dir(path).expect("read_dir") {
            let e = e.expect("entry");
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(e.file_name().as_bytes());
            scan(&e.path(), r, out);
        }
    }
}

/// Every difference between the trees at `a` and `b` (empty when identical), including hard
/// link structure: paths sharing an inode in `a` must share one in `b`, and only those.
pub fn compare_trees(a: &Path, b: &Path) -> Vec<String> {
    compare_trees_opt(a, b, true)
}

/// [`compare_trees`], optionally ignoring link counts and hard-link structure (for partial
/// restores, where some names of a hard-linked file are deliberately left out).
pub fn compare_trees_opt(a: &Path, b: &Path, links: bool) -> Vec<String> {
    let ta = scan_tree(a);
    let tb = scan_tree(b);
    let mut diffs = Vec::new();
    let show = |p: &[u8]| format!("/{}", String::from_utf8_lossy(p));
    for (p, ea) in &ta {
        match tb.get(p) {
            None => diffs.push(format!("{} missing from {}", show(p), b.display())),
            Some(eb) => {
                let mut ea = ea.clone();
                ea.ino = eb.ino;
                if !links {
                    ea.nlink = eb.nlink;
                }
                if &ea != eb {
                    diffs.push(format!("{}: {}", show(p), field_diffs(&ea, eb)));
                }
            }
        }
    }
    for p in tb.keys() {
        if !ta.contains_key(p) {
            diffs.push(format!("{} is extra in {}", show(p), b.display()));
        }
    }
    // Hard links: the partition of non-directories by inode must be the same.
    let groups = |t: &BTreeMap<Vec<u8>, EntryInfo>| {
        let mut by_ino: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
        for (p, e) in t {
            if e.kind != "dir" {
                by_ino.entry(e.ino).or_default().push(p.clone());
            }
        }
        let mut g: Vec<Vec<Vec<u8>>> = by_ino.into_values().collect();
        g.sort();
        g
    };
    let (ga, gb) = (groups(&ta), groups(&tb));
    if links && ga != gb {
        let fmt = |g: &Vec<Vec<Vec<u8>>>| {
            g.iter()
                .filter(|x| x.len() > 1)
                .map(|x| x.iter().map(|p| show(p)).collect::<Vec<_>>().join(" = "))
                .collect::<Vec<_>>()
        };
        diffs.push(format!(
            "hard links differ: {:?} vs {:?}",
            fmt(&ga),
            fmt(&gb)
        ));
    }
    diffs
}

/// The fields in which two entries differ, readable (xattr names and values lossily).
fn field_diffs(a: &EntryInfo, b: &EntryInfo) -> String {
    let mut d = Vec::new();
    macro_rules! field {
        ($f:ident) => {
            if a.$f != b.$f {
                d.push(format!("{} {:?} != {:?}", stringify!($f), a.$f, b.$f));
            }
        };
    }
    field!(kind);
    if a.mode != b.mode {
        d.push(format!("mode {:04o} != {:04o}", a.mode, b.mode));
    }
    field!(uid);
    field!(gid);
    field!(mtime_ns);
    field!(size);
    field!(content);
    field!(rdev);
    field!(nlink);
    if a.target != b.target {
        let t = |t: &Option<Vec<u8>>| t.as_ref().map(|t| String::from_utf8_lossy(t).into_owned());
        d.push(format!(
            "symlink target {:?} != {:?}",
            t(&a.target),
            t(&b.target)
        ));
    }
    if a.xattrs != b.xattrs {
        let x = |m: &BTreeMap<Vec<u8>, Vec<u8>>| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "{}={:?}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    )
                })
                .collect::<Vec<_>>()
        };
        d.push(format!("xattrs {:?} != {:?}", x(&a.xattrs), x(&b.xattrs)));
    }
    d.join(", ")
}

/// Panic with every difference unless the trees are identical.
#[track_caller]
pub fn assert_trees_equal(a: &Path, b: &Path) {
    let d = compare_trees(a, b);
    assert!(
        d.is_empty(),
        "trees differ ({} vs {}):\n{}",
        a.display(),
        b.display(),
        d.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Crafting repository objects
// ---------------------------------------------------------------------------------------------

/// Builds repository objects directly with `cairn-format` and the repository's write key, as
/// a malicious storage holder who also stole a write key could (on either backend). Trees are encoded with
/// `record::encode`, bypassing `Tree::encode`'s sorting, so any node list can be stored.
pub struct Crafter {
    store: Store,
    keys: KeyRecord,
}

impl Crafter {
    /// A crafter for the repository of `fx`.
    pub fn new(fx: &Fixture) -> Crafter {
        Crafter {
            store: fx.store.clone(),
            keys: fx.write_key_record(),
        }
    }

    /// The blob id of `plaintext` in this repository.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        self.keys.chunk_id_key().id(plaintext)
    }

    fn master(&self) -> Vec<age::x25519::Recipient> {
        self.keys
            .master_recipients
            .iter()
            .map(|r| envelope::parse_recipient(r).expect("recipient"))
            .collect()
    }

    fn meta_and_master(&self) -> Vec<age::x25519::Recipient> {
        repo_objects::meta_recipients(&self.keys)
    }

    fn put(&self, rel: &str, bytes: &[u8]) {
        self.store.write(rel, bytes);
    }

    /// Store `blobs` as one pack of `kind`; returns its index entry.
    pub fn put_pack(&self, kind: PackKind, blobs: &[Vec<u8>]) -> IndexPack {
        let mut pb = PackBuilder::new(kind, 0);
        for b in blobs {
            let id = self.blob_id(b);
            pb.add_frame(
                Compression::None,
                b,
                b.len() as u32,
                &[(id, 0, b.len() as u32)],
            );
        }
        let (plain, trailer) = pb.finish();
        let recips = match kind {
            PackKind::Data => self.master(),
            PackKind::Tree => self.meta_and_master(),
        };
        let ct = envelope::encrypt(&plain, &recips);
        let id = Id::of_object(&ct);
        let hex = id.to_hex();
        self.put(&format!("{}/{}/{}", kind.dir(), &hex[..2], hex), &ct);
        IndexPack {
            id,
            kind,
            size: ct.len() as u64,
            blobs: trailer.blobs,
        }
    }

    /// A junk data pack (`seed`'s 64 bytes) whose id sorts below `bound` (hex), as an
    /// attacker grinds one so that lookups find its listings first.
    pub fn junk_pack_below(&self, seed: u64, bound: &str) -> IndexPack {
        loop {
            let p = self.put_pack(PackKind::Data, &[random_bytes(seed, 64)]);
            let h = p.id.to_hex();
            if h.as_str() < bound {
                return p;
            }
            self.store.delete(&format!("data/{}/{h}", &h[..2]));
        }
    }

    /// Plant an index object claiming that the stored pack `junk` holds the blobs of
    /// `contents` (each in a frame that says it is that long, as a consistent forgery would);
    /// returns the index object's id.
    pub fn plant_claim(&self, junk: IndexPack, contents: &[Vec<u8>]) -> Id {
        let blobs = contents
            .iter()
            .map(|c| cairn_format::pack::BlobEntry {
                id: self.blob_id(c),
                frame: cairn_format::pack::FrameRef {
                    raw_len: c.len() as u32,
                    compression: Compression::Zstd,
                    ..junk.blobs[0].frame
                },
                offset: 0,
                len: c.len() as u32,
            })
            .collect();
        let claim = IndexPack { blobs, ..junk };
        self.put_meta("index", &IndexRecord { packs: vec![claim] }.encode())
    }

    /// Plant an index object claiming that the stored pack `junk` holds every blob the
    /// repository's index objects (of `fx`) list, at the places they list; planted again until
    /// its name sorts before theirs, as an attacker grinds one so that the claim is the
    /// listing lookups find first. Returns its id.
    pub fn plant_claim_of_everything(&self, fx: &Fixture, junk: IndexPack) -> Id {
        let honest = self.store.names("index");
        let packs: Vec<IndexPack> = honest
            .iter()
            .flat_map(|n| {
                let plain = repo_objects::read_meta(fx, &self.store, n).expect("index object");
                IndexRecord::decode(&plain).expect("index record").packs
            })
            .collect();
        // As large as the largest, so that every place listed is in it.
        let size = packs.iter().map(|p| p.size).max().unwrap_or(junk.size);
        let blobs = packs.into_iter().flat_map(|p| p.blobs).collect();
        let claim = IndexRecord {
            packs: vec![IndexPack {
                blobs,
                size,
                ..junk
            }],
        }
        .encode();
        let lowest = fx.lowest_name("index");
        loop {
            // A fresh encryption, a fresh name.
            let id = self.put_meta("index", &claim);
            if id.to_hex() < lowest {
                return id;
            }
            self.store.delete(&format!("index/{id}"));
        }
    }

    /// Encrypt `plaintext` to the metadata recipients and store it as `dir/<blake3>`.
    pub fn put_meta(&self, dir: &str, plaintext: &[u8]) -> Id {
        let ct = envelope::encrypt(plaintext, &self.meta_and_master());
        let id = Id::of_object(&ct);
        self.put(&format!("{dir}/{id}"), &ct);
        id
    }

    /// Store a snapshot whose root tree blob is `root` (raw tree record bytes), with further
    /// tree blobs `trees` and file content blobs `data`; writes packs, an index and the
    /// snapshot object. Returns the snapshot id (hex).
    pub fn inject_snapshot(&self, root: &[u8], trees: Vec<Vec<u8>>, data: Vec<Vec<u8>>) -> String {
        // Recorded paths: the root's entries, as a consistent forgery would record them.
        let paths = record::decode::<Tree>(RecordKind::Tree, root)
            .map(|t| {
                t.nodes
                    .iter()
                    .map(|n| format!("/{}", String::from_utf8_lossy(&n.name)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|_| vec!["/crafted".into()]);
        self.inject_snapshot_at(paths, root, trees, data)
    }

    /// [`Crafter::inject_snapshot`] recording `paths` as the snapshot's paths.
    pub fn inject_snapshot_at(
        &self,
        paths: Vec<String>,
        root: &[u8],
        trees: Vec<Vec<u8>>,
        data: Vec<Vec<u8>>,
    ) -> String {
        self.inject_snapshot_with(paths, root, trees, data, |_| {})
    }

    /// [`Crafter::inject_snapshot_at`], the snapshot object changed by `edit` before it is
    /// stored (its source kind, its facts).
    pub fn inject_snapshot_with(
        &self,
        paths: Vec<String>,
        root: &[u8],
        trees: Vec<Vec<u8>>,
        data: Vec<Vec<u8>>,
        edit: impl FnOnce(&mut Snapshot),
    ) -> String {
        let mut all_trees = trees;
        all_trees.push(root.to_vec());
        let mut index = IndexRecord::default();
        index.packs.push(self.put_pack(PackKind::Tree, &all_trees));
        if !data.is_empty() {
            index.packs.push(self.put_pack(PackKind::Data, &data));
        }
        self.put_meta("index", &index.encode());
        let mut snap = Snapshot {
            time_ns: 1_760_000_000_000_000_000,
            host: "crafted".into(),
            username: "mallory".into(),
            source: SourceKind::Paths,
            paths,
            tags: vec!["crafted".into()],
            tree: self.blob_id(root),
            parent: None,
            stats: SnapshotStats::default(),
            program: "crafted".into(),
            facts: Vec::new(),
        };
        edit(&mut snap);
        self.put_meta("snapshots", &snap.encode()).to_hex()
    }
}

/// Encode a tree blob from `nodes` exactly in the given order (no sorting, no checks).
pub fn raw_tree(nodes: Vec<Node>) -> Vec<u8> {
    record::encode_at(RecordKind::Tree, 1, &Tree { nodes })
}

/// A regular file node with `content` blobs of total `size` bytes.
pub fn file_node(name: &[u8], content: Vec<Id>, size: u64) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::File);
    n.mode = 0o644;
    n.mtime_ns = 1_700_000_000_000_000_000;
    n.size = size;
    n.content = content;
    n
}

/// A directory node with subtree `sub`.
pub fn dir_node(name: &[u8], sub: Id) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::Dir);
    n.mode = 0o755;
    n.mtime_ns = 1_700_000_000_000_000_000;
    n.subtree = Some(sub);
    n
}

/// A symlink node pointing at `target`.
pub fn symlink_node(name: &[u8], target: &[u8]) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::Symlink);
    n.mode = 0o777;
    n.mtime_ns = 1_700_000_000_000_000_000;
    n.target = Some(target.to_vec());
    n
}
