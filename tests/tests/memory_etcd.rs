//! Memory against the size of an etcd database (issue 16, goal 2): backup, restore (in the
//! cluster-backup layout, with the sha256 trailer and bbolt facts verified), copy and `ls` of
//! a real etcd's ~380 MB snapshot peak within a bound of the same for its ~20 MB snapshot, and
//! both come back byte for byte (the copy checked with `check --read-data`). `ls` reads the
//! tree packs' index only and leaves the database's content lists unread; it held the whole
//! index and the database's ids before (~76 bytes a page: +9 MiB for the large database,
//! +2.6 MiB now, the index objects decoded one at a time), which its bound catches.
//!
//! What grows with the database is per page (4 KiB): backup holds its page ids (32 bytes),
//! 8–32 bytes of the set of ids it added and the bbolt walk's page summaries (32 bytes);
//! restore the index entries (44), the file's ids while they are placed (32) and the plan
//! (16; the page summaries go to a temporary file beyond 8,192 pages, see memory_restore.rs,
//! which bounds restore more tightly); copy the index entries and one bit per blob. The bounds allow that for the ~87,000 extra pages and a few MiB of noise. Copy's
//! index records used to be built and written as one object (~57 bytes a blob, held three
//! times while encoded, compressed and encrypted: 14.7 MiB more for the large database
//! against 6.3 now), which its bound catches.

use cairn_e2e::etcd;
use cairn_e2e::rss::{cairn_with_rss, copy_checked_with_rss, restored_database_rss};
use cairn_e2e::*;
use std::fs;
use std::path::Path;

/// Allowed growth of each command's peak RSS (backup, restore, copy, ls) from the small
/// database to the large one.
const SLACK: [u64; 4] = [16 << 20, 20 << 20, 10 << 20, 5 << 20];

/// 1 MB values in the large database.
const LARGE_VALUES: usize = 300;

/// Peak RSS of backup, restore and copy of `db` into a fresh local repository of 1 MiB packs
/// (the packs in flight are then the same few MiB for both databases: what is left is what
/// grows with the number of pages).
fn peaks(name: &str, db: &Path) -> [u64; 4] {
    let fx = Fixture::on_with(Backend::Local, &["--pack-size", "1"]);
    let env = fx.env();
    let (out, backup) = cairn_with_rss(
        &fx.wk_args(&["--json", "backup", "etcd", "--snapshot-file", s(db)]),
        &env_refs(&env),
    );
    out.ok();
    let snap = Fixture::snap_id(&out.json());
    let (out, ls) = cairn_with_rss(&fx.wk_args(&["ls", "--long", &snap]), &env_refs(&env));
    let listing = &out.ok().stdout;
    assert!(listing.contains(".db"), "{name}: {listing}");
    let restore = restored_database_rss(&fx, &snap, db, &fx.path("out"));
    let again = fx.path("out-copy");
    let copy = copy_checked_with_rss(
        &fx,
        &snap,
        &["--layout", "cluster-backup", "--target", s(&again)],
    );
    let written = files_below(&again);
    assert!(
        fs::read(&written[0]).unwrap() == fs::read(db).unwrap(),
        "{name}: the database restored from the copy differs"
    );
    eprintln!(
        "{name}: {} bytes; peak RSS backup {} KiB, restore {} KiB, copy {} KiB, ls {} KiB",
        fs::metadata(db).unwrap().len(),
        backup >> 10,
        restore >> 10,
        copy >> 10,
        ls >> 10
    );
    [backup, restore, copy, ls]
}

#[test]
fn backup_restore_and_copy_of_a_large_etcd_database_peak_as_for_a_small_one() {
    if !etcd::available("backup_restore_and_copy_of_a_large_etcd_database_peak_as_for_a_small_one")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = etcd::small_and_large(dir.path(), 16, LARGE_VALUES, 10);
    let (small_len, large_len) = (
        fs::metadata(&small).unwrap().len(),
        fs::metadata(&large).unwrap().len(),
    );
    let small = peaks("small", &small);
    let large = peaks("large", &large);
    for (i, what) in ["backup", "restore", "copy", "ls"].iter().enumerate() {
        assert!(
            large[i] < small[i] + SLACK[i],
            "{what} peaked at {} KiB for {large_len} bytes, {} KiB for {small_len} bytes",
            large[i] >> 10,
            small[i] >> 10
        );
    }
}
