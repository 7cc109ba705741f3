//! The local metadata cache of remote repositories, against the real S3 server: reads come
//! from it (fewer bytes down), damaged entries are refetched, entries another host's forget
//! removed are swept, and check audits the repository, not the cache.

use cairn_e2e::s3::FaultProxy;
use cairn_e2e::*;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// A repository on S3 with `n` snapshots of a changing directory, and a proxy in front of the
/// server that counts bytes.
fn repo_with_history(n: usize) -> (Fixture, FaultProxy, PathBuf) {
    let fx = Fixture::on(Backend::S3);
    let proxy = FaultProxy::start(s3::shared().addr());
    let src = fx.dir("src");
    for i in 0..n {
        write_file(
            &src.join(format!("file-{i}")),
            &text_bytes(i as u64, 20_000),
        );
        fx.backup(&[&src]);
    }
    (fx, proxy, src)
}

/// Bytes downloaded through `proxy` by `args` (write key) with extra environment `extra`.
fn bytes_down(fx: &Fixture, proxy: &FaultProxy, args: &[&str], extra: &[&str]) -> u64 {
    let before = proxy.stats().bytes_down;
    let endpoint = proxy.endpoint();
    let mut a: Vec<&str> = extra.to_vec();
    a.extend_from_slice(args);
    fx.wk_env(&a, &[("CAIRN_S3_ENDPOINT", OsStr::new(&endpoint))])
        .ok();
    proxy.stats().bytes_down - before
}

/// The repository's cache directory below the fixture's cache root (one per repository id).
fn repo_cache(fx: &Fixture) -> PathBuf {
    let dirs: Vec<_> = fs::read_dir(fx.cache())
        .expect("cache root exists after a backup")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "one repository, one cache directory: {dirs:?}"
    );
    dirs[0].clone()
}

fn cached_names(root: &Path, sub: &str) -> Vec<String> {
    let mut out: Vec<String> = files_below(&root.join(sub))
        .iter()
        .map(|p| {
            p.strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| !n.rsplit('/').next().unwrap_or("").starts_with('.'))
        .collect();
    out.sort();
    out
}

#[test]
fn metadata_is_read_from_the_cache_and_written_there_by_backups() {
    let (fx, proxy, src) = repo_with_history(5);
    let cache = repo_cache(&fx);
    // Write-key backups never read key objects (the write key holds the secrets).
    for sub in ["index", "snapshots", "tree"] {
        assert_eq!(
            cached_names(&cache, sub),
            fx.object_names(sub),
            "backups leave every {sub} object in the cache"
        );
    }
    assert!(
        cached_names(&cache, "data").is_empty(),
        "data packs are never cached"
    );

    let metadata: u64 = ["keys", "index", "snapshots", "tree"]
        .iter()
        .flat_map(|sub| fx.store.list(sub))
        .map(|(_, size)| size)
        .sum();
    let uncached = bytes_down(&fx, &proxy, &["ls", "latest"], &["--no-cache"]);
    let cached = bytes_down(&fx, &proxy, &["ls", "latest"], &[]);
    assert!(
        uncached - cached >= metadata * 9 / 10,
        "with the cache, ls downloads {cached} bytes, without {uncached}; the metadata it need not fetch is {metadata}"
    );

    // A backup of unchanged files fetches none of the history either.
    let again = bytes_down(&fx, &proxy, &["backup", s(&src)], &[]);
    assert!(
        again + metadata * 9 / 10 <= uncached + 4096,
        "an unchanged backup downloaded {again} bytes (history {metadata})"
    );

    // Reading with the identity works from the cache too.
    let target = fx.dir("restored");
    fx.restore("latest", &target, &[]).ok();
    assert_trees_equal(&src, &Fixture::restored(&target, &src));
    assert_eq!(
        cached_names(&cache, "keys"),
        fx.object_names("keys"),
        "an identity open leaves the key objects it read in the cache"
    );
}

#[test]
fn a_damaged_cache_entry_is_fetched_again_and_rewritten() {
    let (fx, _proxy, _src) = repo_with_history(2);
    let cache = repo_cache(&fx);
    let snaps = cached_names(&cache, "snapshots");
    let victim = cache.join(&snaps[0]);
    let mut bytes = fs::read(&victim).expect("cached snapshot");
    let good = bytes.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&victim, &bytes).expect("damage the entry");
    let trees = cached_names(&cache, "tree");
    fs::write(cache.join(&trees[0]), b"truncated").expect("damage a tree entry");

    let out = fx.wk(&["--json", "snapshots"]);
    out.ok();
    assert_eq!(out.json().as_array().expect("array").len(), 2, "{out}");
    out.stderr_has(&["does not match its name"]);
    assert_eq!(fs::read(&victim).expect("entry"), good, "entry rewritten");
    fx.wk(&["ls", "latest"]).ok();
    let target = fx.dir("restored");
    fx.restore("latest", &target, &[]).ok();
}

#[test]
fn entries_another_host_forgot_are_swept_and_never_shown() {
    let (fx, _proxy, _src) = repo_with_history(4);
    let cache = repo_cache(&fx);
    assert_eq!(cached_names(&cache, "snapshots").len(), 4);
    // Another host, with its own cache, forgets two snapshots.
    let other = fx.path("other-cache");
    fx.wk_env(
        &["forget", "--keep-last", "2"],
        &[("CAIRN_CACHE_DIR", other.as_os_str())],
    )
    .ok();
    let out = fx.wk(&["--json", "snapshots"]);
    out.ok();
    assert_eq!(out.json().as_array().expect("array").len(), 2, "{out}");
    assert_eq!(
        cached_names(&cache, "snapshots"),
        fx.object_names("snapshots"),
        "the cache holds exactly what the repository lists"
    );
}

#[test]
fn check_audits_the_repository_not_the_cache() {
    let (fx, _proxy, _src) = repo_with_history(2);
    let trees = fx.object_names("tree");
    let victim = &trees[0];
    fx.store.write(victim, b"replaced on the server");
    // Reads that go through the cache still have the good copy ...
    fx.wk(&["ls", "latest"]).ok();
    // ... but check reads the server and names the damage.
    let out = fx.wk(&["--json", "check"]);
    out.code_is(4);
    let short = &victim.rsplit('/').next().unwrap()[..8];
    assert!(out.stdout.contains(short), "check names {victim}: {out}");
}

#[test]
fn no_cache_writes_nothing_and_local_repositories_are_not_cached() {
    let fx = Fixture::on(Backend::S3);
    let src = fx.dir("src");
    write_file(&src.join("f"), b"content");
    // (init and write-key may have cached key objects; start from nothing.)
    let _ = fs::remove_dir_all(fx.cache());
    fx.wk(&["--no-cache", "backup", s(&src)]).ok();
    fx.wk(&["--no-cache", "ls", "latest"]).ok();
    assert!(!fx.cache().exists(), "--no-cache created {:?}", fx.cache());
    // The environment variable, spelled as the README does, and its negation.
    fx.wk_env(&["ls", "latest"], &[("CAIRN_NO_CACHE", OsStr::new("1"))])
        .ok();
    assert!(
        !fx.cache().exists(),
        "CAIRN_NO_CACHE=1 created {:?}",
        fx.cache()
    );
    fx.wk_env(&["ls", "latest"], &[("CAIRN_NO_CACHE", OsStr::new("0"))])
        .ok();
    assert!(fx.cache().exists(), "CAIRN_NO_CACHE=0 turned the cache off");

    let local = Fixture::new();
    let src = local.dir("src");
    write_file(&src.join("f"), b"content");
    local.backup(&[&src]);
    local.wk(&["ls", "latest"]).ok();
    assert!(!local.cache().exists(), "a local repository was cached");
}
