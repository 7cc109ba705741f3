//! Restore memory against the size of an etcd database (issue 16, goal 2): restoring a real
//! etcd's ~250 MB snapshot (in the cluster-backup layout: sha256 trailer and bbolt facts
//! verified from the bytes written) peaks within a few MiB of restoring its ~60 MB snapshot.
//! The small one is large enough for the buffers in flight (spans, pieces read back for the
//! check) to fill as they do for the large one: what differs is what grows with the pages.
//!
//! What grows is per page (4 KiB, ~47,000 more pages): the index entries (44 bytes: both
//! repositories' index objects are below the 8 MiB from which restore sets a large file's
//! entries aside on disk) and the file's ids while its plan is made and its content list read
//! (32); the plan of a file of 8,192 blobs or more is on disk (it held 16 bytes a page: index
//! entry, position, end offset). The bbolt walk's page summaries (32 bytes a page) go to a
//! temporary file beyond 8,192 pages; the plan used to hold 48 bytes a blob and the ids
//! throughout, and a content list was held twice while read: ~150 bytes a page, ~7 MiB more
//! for the large database, which the bound catches.

use cairn_e2e::etcd;
use cairn_e2e::rss::restored_database_rss;
use cairn_e2e::*;
use std::fs;
use std::path::Path;

/// Allowed growth of the restore's peak RSS from the small database to the large one.
const SLACK: u64 = 5 << 20;

/// 1 MB values in the small and the large database.
const SMALL_VALUES: usize = 48;
const LARGE_VALUES: usize = 200;

/// Peak RSS of a restore of `db`, backed up into a fresh local repository of 1 MiB packs.
fn restore_peak(name: &str, db: &Path) -> u64 {
    let fx = Fixture::on_with(Backend::Local, &["--pack-size", "1"]);
    let out = fx.wk(&["--json", "backup", "etcd", "--snapshot-file", s(db)]);
    let snap = Fixture::snap_id(&out.ok().json());
    let rss = restored_database_rss(&fx, &snap, db, &fx.path("out"));
    eprintln!(
        "{name}: {} bytes; restore peak RSS {} KiB",
        fs::metadata(db).unwrap().len(),
        rss >> 10
    );
    rss
}

#[test]
fn restore_of_a_larger_etcd_database_peaks_as_for_a_small_one() {
    if !etcd::available("restore_of_a_larger_etcd_database_peaks_as_for_a_small_one") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = etcd::small_and_large(dir.path(), SMALL_VALUES, LARGE_VALUES, 3);
    let (small_len, large_len) = (
        fs::metadata(&small).unwrap().len(),
        fs::metadata(&large).unwrap().len(),
    );
    let small = restore_peak("small", &small);
    let large = restore_peak("large", &large);
    assert!(
        large < small + SLACK,
        "restore peaked at {} KiB for {large_len} bytes, {} KiB for {small_len} bytes",
        large >> 10,
        small >> 10
    );
}
