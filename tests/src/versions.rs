//! Source trees backed up version after version (so that successive snapshots share some data
//! and not other), and checks that a snapshot restores to exactly its source.

use crate::{compare_trees, env_refs, random_bytes, s, s3, text_bytes, write_file, Env, Fixture};
use std::fs;
use std::path::{Path, PathBuf};

/// The shape of a source tree that changes from version to version: `changing` files of
/// 300 KB of which version v has changed the first v (f_i changes in version i+1 and stays),
/// a file unique to the version (`unique` bytes), a compressible one (`notes` bytes), and
/// `configs` small configuration files shared by every version.
#[derive(Debug, Clone, Copy)]
pub struct Versions {
    /// How many 300 KB files change over the versions.
    pub changing: u64,
    /// Size of the file unique to each version.
    pub unique: usize,
    /// Size of the compressible, YAML-like file (different in every version).
    pub notes: usize,
    /// How many small configuration files every version shares.
    pub configs: u32,
}

impl Versions {
    /// Write version `v` of the tree into `dir`.
    pub fn write(&self, dir: &Path, v: u64) {
        for i in 0..self.changing {
            let generation = if i < v { i + 1 } else { 0 };
            write_file(
                &dir.join(format!("f{i}.bin")),
                &random_bytes(1000 * generation + i, 300_000),
            );
        }
        write_file(
            &dir.join("unique.bin"),
            &random_bytes(50_000 + v, self.unique),
        );
        write_file(&dir.join("notes.yaml"), &text_bytes(60_000 + v, self.notes));
        for j in 0..self.configs {
            write_file(
                &dir.join(format!("etc/small-{j}.conf")),
                format!("setting {j} = on\n").as_bytes(),
            );
        }
    }

    /// Back up versions `first..first + n` with the write key, each from its own directory
    /// `v<k>` of `fx`; returns (snapshot, source) per version.
    pub fn back_up(&self, fx: &Fixture, first: u64, n: u64) -> Vec<(String, PathBuf)> {
        (first..first + n)
            .map(|v| {
                let dir = fx.path(&format!("v{v}"));
                self.write(&dir, v);
                (Fixture::snap_id(&fx.backup(&[&dir])), dir)
            })
            .collect()
    }
}

/// A new, unused path inside `fx` (not created): `stem-<n>`.
pub fn fresh_dir(fx: &Fixture, stem: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let p = fx.path(&format!("{stem}-{}", N.fetch_add(1, Ordering::Relaxed)));
    assert!(!p.exists(), "{} exists already", p.display());
    p
}

/// Restore snapshot `snap` of repository `repo` (a location with `fx`'s keys; `s3://…` is
/// reached through the shared S3 server) with the identity into a fresh directory, compare it
/// with `src` and remove it again; what went wrong, if anything.
pub fn restore_problem(fx: &Fixture, repo: &str, snap: &str, src: &Path) -> Option<String> {
    let target = fresh_dir(fx, "restore");
    let env = if repo.starts_with("s3://") {
        s3::shared().env()
    } else {
        Env::new()
    };
    let out = fx.run_env(
        &[
            "-r",
            repo,
            "-i",
            s(&fx.identity),
            "restore",
            snap,
            "--target",
            s(&target),
        ],
        &env_refs(&env),
    );
    let problem = if out.code != 0 {
        Some(format!(
            "snapshot {snap} does not restore: {}",
            out.stderr.trim()
        ))
    } else {
        let d = compare_trees(src, &Fixture::restored(&target, src));
        (!d.is_empty()).then(|| format!("snapshot {snap} restores differently: {}", d.join("; ")))
    };
    fs::remove_dir_all(&target).ok();
    problem
}

/// Panic, saying `ctx`, unless snapshot `snap` of `repo` restores to exactly `src` (see
/// [`restore_problem`]).
#[track_caller]
pub fn assert_restores(fx: &Fixture, repo: &str, snap: &str, src: &Path, ctx: &str) {
    if let Some(p) = restore_problem(fx, repo, snap, src) {
        panic!("{ctx}: {p}");
    }
}
