//! `check` holds what does not grow with the repository's blobs (store/src/check.rs,
//! `load_index`): above 8 MiB of index objects, the tree packs' entries located, the data
//! packs' blob ids on disk and one bit per referenced blob; `--read-data` reads each pack's
//! index entries back from a temporary file. A check of a repository that also holds ~420,000
//! blobs of a forgotten snapshot peaks no higher than one of a repository holding only the same
//! small snapshot, reads and verifies every blob, and still finds and names damage.

use cairn_e2e::rss::cairn_with_rss;
use cairn_e2e::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Allowed difference in peak RSS: what reading one of the large repository's index objects
/// takes at once (32,768 blobs: its plaintext and decoded records, ~6-8 MB, where the small
/// repository's are small), and run-to-run noise; under the ~18 MB of its whole index in
/// memory (44 bytes per blob), and far under the ~60 MB more that `--read-data` held with
/// every pack's entries by pack.
const SLACK: u64 = 8 << 20;

/// Every file below `dir`.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path());
            }
        }
    }
    out
}

#[test]
fn check_of_a_large_repository_peaks_as_of_a_small_one() {
    // 1 KiB average chunks: `seq` output (~570 MB, every chunk distinct) gives ~420,000
    // blobs, about 20 MB of index objects; 1 MiB packs, index objects every 32,768 blobs.
    let big = Fixture::on_with(Backend::Local, &["--chunk-size", "1", "--pack-size", "1"]);
    let alone = Fixture::on_with(Backend::Local, &["--chunk-size", "1", "--pack-size", "1"]);
    // In 32 files: content lists of ~13,000 ids each, no larger than the small snapshot's
    // (one of ~420,000 would be a 13 MB tree-pack frame that `--read-data` reads whole).
    let many = big.dir("many");
    for i in 0..32u64 {
        let (from, to) = (i * 1_875_000 + 1, (i + 1) * 1_875_000);
        let text = sh("seq", &[&from.to_string(), &to.to_string()]);
        std::fs::write(many.join(format!("n{i}.txt")), text).unwrap();
    }
    let numbers = Fixture::snap_id(&big.backup(&[&many]));
    std::fs::remove_dir_all(&many).unwrap();
    // Forgotten, not pruned: the index still lists its blobs, no snapshot references them.
    let forgotten: Vec<PathBuf> = files(&big.repo.join("snapshots"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&numbers))
        .collect();
    assert_eq!(forgotten.len(), 1, "{forgotten:?}");
    std::fs::remove_file(&forgotten[0]).unwrap();

    let mut rng = Rng::new(11);
    let mut bytes = vec![0u8; 1 << 20];
    rng.fill(&mut bytes);
    let mut reports = Vec::new();
    let mut small_packs = Vec::new();
    for fx in [&big, &alone] {
        let src = fx.dir("small");
        std::fs::write(src.join("data.bin"), &bytes).unwrap();
        // Packs as dense in blobs as the large repository's (--read-data holds a pack's
        // entries and trailer at a time): ~20,000 blobs of `seq` output.
        std::fs::write(src.join("n.txt"), sh("seq", &["1", "3000000"])).unwrap();
        let before = files(&fx.repo.join("data"));
        fx.backup(&[&src]);
        small_packs.push(&files(&fx.repo.join("data")) - &before);
        let env = fx.env();
        let (out, rss) = cairn_with_rss(&fx.id_args(&["--json", "check"]), &env_refs(&env));
        let v = out.ok().json();
        assert_eq!(v["clean"], true, "{v:#}");
        let (out, read_rss) = cairn_with_rss(
            &fx.id_args(&["--json", "check", "--read-data"]),
            &env_refs(&env),
        );
        let read = out.ok().json();
        assert_eq!(read["clean"], true, "{read:#}");
        assert_eq!(num(&read, "packs_read"), num(&read, "packs"), "{read:#}");
        assert_eq!(
            num(&read, "blobs_verified"),
            num(&read, "blobs"),
            "{read:#}"
        );
        reports.push((rss, read_rss, num(&v, "blobs")));
    }
    let ((big_check, big_read, blobs), (alone_check, alone_read, alone_blobs)) =
        (reports[0], reports[1]);
    eprintln!(
        "peak RSS KiB: check {} / {}, check --read-data {} / {} ({blobs} / {alone_blobs} blobs)",
        big_check >> 10,
        alone_check >> 10,
        big_read >> 10,
        alone_read >> 10
    );
    assert!(
        blobs > 400_000 && alone_blobs < 40_000,
        "{blobs} and {alone_blobs} blobs"
    );
    assert!(
        big_check < alone_check + SLACK,
        "check peaked at {} KiB in {blobs} blobs, {} KiB in {alone_blobs}",
        big_check >> 10,
        alone_check >> 10
    );
    assert!(
        big_read < alone_read + SLACK,
        "check --read-data peaked at {} KiB in {blobs} blobs, {} KiB in {alone_blobs}",
        big_read >> 10,
        alone_read >> 10
    );

    // Damage is still found and named with what it affects: a pack of the small snapshot
    // truncated in the large repository.
    let pack = small_packs[0]
        .iter()
        .next()
        .expect("the small backup wrote packs");
    let len = std::fs::metadata(pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(pack)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let out = big.id(&["--json", "check"]);
    out.code_is(4);
    let v = out.json();
    let problems = v["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{v:#}");
    let p = &problems[0];
    let name = pack.file_name().unwrap().to_string_lossy();
    assert!(p["object"].as_str().unwrap().ends_with(&*name), "{v:#}");
    assert!(p["cause"].as_str().unwrap().contains("truncated"), "{v:#}");
    assert_eq!(p["snapshots"].as_array().unwrap().len(), 1, "{v:#}");
    assert!(num(p, "files_affected") >= 1, "{v:#}");
}
