//! Peak memory of one cairn run. GNU time measures it from the kernel's accounting of its
//! own small child: measuring a child of the test process directly would count the test
//! process's memory too (a spawned child inherits its parent's high-water mark until exec).

use crate::{background, cairn_bin, cmdline, run_captured, Output};
use std::ffi::OsStr;
use std::path::Path;

/// Run cairn with `args` and `env` (as [`crate::cairn`]) under `/usr/bin/time`; returns what it
/// printed and its peak resident set size in bytes.
pub fn cairn_with_rss<A: AsRef<OsStr>>(args: &[A], env: &[(&str, &OsStr)]) -> (Output, u64) {
    let report = tempfile::NamedTempFile::new().expect("temporary file");
    let bin = cairn_bin();
    let mut cmd = background::clean_command(Path::new("/usr/bin/time"), env);
    cmd.args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(&bin)
        .args(args);
    let out = run_captured(cmd, cmdline(&bin, args));
    let text = std::fs::read_to_string(report.path()).expect("reading /usr/bin/time's report");
    let kib: u64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {text:?}\n{out}"));
    (out, kib * 1024)
}

/// Copy snapshot `snap` of `fx`'s repository into a fresh repository made `init --like` it,
/// measuring the copy's peak RSS (returned); then prove the copy whole: `check --read-data`
/// of it, and `restore SNAP RESTORE_ARGS…` from it (the caller compares what was restored).
pub fn copy_checked_with_rss(fx: &crate::Fixture, snap: &str, restore_args: &[&str]) -> u64 {
    let env = fx.env();
    let to = fx.fresh_store("copy");
    let to_loc = to.location();
    let id = crate::s(&fx.identity);
    fx.run(&[
        "-r",
        &to_loc,
        "-i",
        id,
        "init",
        "--like",
        crate::s(&fx.repo),
    ])
    .ok();
    let (out, rss) = cairn_with_rss(
        &fx.id_args(&["copy", "--to", &to_loc, snap]),
        &crate::env_refs(&env),
    );
    out.ok();
    // Every blob's index record is there and every blob reads back.
    fx.run(&["-r", &to_loc, "-i", id, "check", "--read-data"])
        .ok();
    let mut restore = vec!["-r", &to_loc, "-i", id, "restore", snap];
    restore.extend_from_slice(restore_args);
    fx.run(&restore).ok();
    rss
}

/// Restore snapshot `snap` of `fx`'s repository (an etcd snapshot of `db`) into `target` in
/// the cluster-backup layout, measuring the restore's peak RSS (returned); the one file
/// written must be `db`, byte for byte.
pub fn restored_database_rss(fx: &crate::Fixture, snap: &str, db: &Path, target: &Path) -> u64 {
    let env = fx.env();
    let (out, rss) = cairn_with_rss(
        &fx.id_args(&[
            "restore",
            snap,
            "--layout",
            "cluster-backup",
            "--target",
            crate::s(target),
        ]),
        &crate::env_refs(&env),
    );
    out.ok();
    let written = crate::files_below(target);
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        std::fs::read(&written[0]).unwrap() == std::fs::read(db).unwrap(),
        "{}: the restored database differs",
        db.display()
    );
    rss
}
