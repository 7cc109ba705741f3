//! A backup's packs go to disk as they are made on local storage (issue 16, goal 2): each is
//! encrypted straight into a temporary file in the repository and named when sealed, so a
//! backup's peak RSS does not grow with the pack size (packs were held whole in memory: two
//! of them on local storage), and a write that fails midway (a full disk) fails the backup
//! with nothing left under `data/`, neither a pack nor its temporary file.

use cairn_e2e::background::clean_command;
use cairn_e2e::rss::cairn_with_rss;
use cairn_e2e::*;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Incompressible input: every pack is full-sized.
const INPUT: usize = 128 << 20;
/// How much more a backup into 32 MiB packs may peak than one into 1 MiB packs (holding two
/// 32 MiB packs in memory costs ~60 MiB more).
const SLACK: u64 = 8 << 20;

/// `len` random bytes from `seed` in a file at `path`, written a piece at a time.
fn random_file(path: &Path, seed: u64, len: usize) {
    let mut rng = Rng::new(seed);
    let mut f = File::create(path).unwrap();
    let mut piece = vec![0u8; 4 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(piece.len());
        rng.fill(&mut piece[..n]);
        f.write_all(&piece[..n]).unwrap();
        left -= n;
    }
}

/// Peak RSS of a backup of `file` into a fresh local repository of `pack_mib` MiB packs, whose
/// data is then read back whole (`check --read-data`) if `verify`.
fn backup_peak(pack_mib: &str, file: &Path, verify: bool) -> u64 {
    let fx = Fixture::on_with(Backend::Local, &["--pack-size", pack_mib]);
    let env = fx.env();
    let (out, rss) = cairn_with_rss(&fx.wk_args(&["--json", "backup", s(file)]), &env_refs(&env));
    out.ok();
    assert!(
        temporary_files(&fx.repo).is_empty(),
        "{:?}",
        temporary_files(&fx.repo)
    );
    let packs = files_below(&fx.repo.join("data"));
    let stored: u64 = packs.iter().map(|p| p.metadata().unwrap().len()).sum();
    assert!(stored >= INPUT as u64, "{stored} bytes in {packs:?}");
    if verify {
        fx.id(&["check", "--read-data"]).ok();
    }
    eprintln!(
        "{pack_mib} MiB packs: {} packs, peak RSS {} KiB",
        packs.len(),
        rss >> 10
    );
    rss
}

#[test]
fn backup_peak_rss_does_not_grow_with_the_pack_size() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.bin");
    random_file(&file, 16, INPUT);
    let small = backup_peak("1", &file, false);
    let large = backup_peak("32", &file, true);
    assert!(
        large < small + SLACK,
        "a backup into 32 MiB packs peaked at {} KiB, into 1 MiB packs at {} KiB",
        large >> 10,
        small >> 10
    );
}

#[test]
fn a_pack_write_that_fails_midway_fails_the_backup_and_leaves_nothing() {
    let fx = Fixture::new();
    let file = fx.path("input.bin");
    random_file(&file, 17, 24 << 20);
    // Files cairn writes may not grow past 4 MiB (a full disk, for a 16 MiB pack): a write
    // past it fails with EFBIG (SIGXFSZ ignored, which exec keeps).
    let env = fx.env();
    let bin = cairn_bin();
    let args = fx.wk_args(&["backup", s(&file)]);
    let mut cmd = clean_command(Path::new("/bin/sh"), &env_refs(&env));
    cmd.args([
        "-c",
        "trap '' XFSZ; exec prlimit --fsize=4194304 \"$0\" \"$@\"",
        s(&bin),
    ])
    .args(&args);
    let out = run_captured(cmd, cmdline(&bin, &args));
    out.failed().stderr_has(&[
        "writing a new pack to",
        "data/.tmp-staged-",
        "File too large",
        "free space",
    ]);
    let data = files_below(&fx.repo.join("data"));
    assert!(data.is_empty(), "{data:?}");
    assert!(files_below(&fx.repo.join("snapshots")).is_empty());

    // Nothing to clean up: the next backup stores everything and reads back whole.
    fx.wk(&["backup", s(&file)]).ok();
    fx.id(&["check", "--read-data"]).ok();
    assert!(temporary_files(&fx.repo).is_empty());
}
