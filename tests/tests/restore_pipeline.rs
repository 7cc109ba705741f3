//! Large files restore through fetcher and worker threads (store/src/restore/content.rs): content
//! spread over many packs and two backups, blobs used many times in one file and runs of zeros
//! (left as holes) come back byte exact; a damaged pack fails the restore, names the pack and
//! leaves no partial file behind. Each on a local repository and from S3, where spans of a pack
//! are coalesced across wider gaps and a pack's nearby spans are cut out of one streamed GET.

use cairn_e2e::*;
use std::fs;
use std::path::Path;

const MB: usize = 1 << 20;

/// Random, a 64 KiB block repeated 64 times, 3 MiB of zeros, random again.
fn content(seed: u64) -> Vec<u8> {
    let mut v = random_bytes(seed, 3 * MB);
    let block = random_bytes(seed + 1, 64 << 10);
    for _ in 0..64 {
        v.extend_from_slice(&block);
    }
    v.extend(std::iter::repeat_n(0u8, 3 * MB));
    v.extend(random_bytes(seed + 2, 2 * MB + 777));
    v
}

fn restored_bytes(fx: &Fixture, snap: &str, target: &Path, src: &Path) -> Vec<u8> {
    fx.restore(snap, target, &[]).ok();
    fs::read(Fixture::restored(target, src)).expect("restored file")
}

#[test]
fn large_files_restore_byte_exact_across_packs_and_backups() {
    byte_exact_across_packs_and_backups(Backend::Local);
}

#[test]
fn large_files_restore_byte_exact_from_s3_with_spans_coalesced_across_gaps() {
    byte_exact_across_packs_and_backups(Backend::S3);
}

fn byte_exact_across_packs_and_backups(backend: Backend) {
    // 1 MiB packs: a 12 MiB file spans a dozen packs.
    let fx = Fixture::on_with(backend, &["--pack-size", "1"]);
    let src = fx.path("src");
    let file = src.join("big.bin");
    let first = content(7);
    write_file(&file, &first);
    let snap1 = Fixture::snap_id(&fx.backup(&[&src]));

    // The second version keeps most blobs (read from the first backup's packs) and adds new
    // ones in the middle and at the end.
    let mut second = first.clone();
    second[5 * MB..5 * MB + 300_000].copy_from_slice(&random_bytes(99, 300_000));
    second.extend(random_bytes(100, MB));
    write_file(&file, &second);
    let snap2 = Fixture::snap_id(&fx.backup(&[&src]));

    assert!(restored_bytes(&fx, &snap1, &fx.path("r1"), &file) == first);
    assert!(restored_bytes(&fx, &snap2, &fx.path("r2"), &file) == second);
    // The zero run is a hole, not written blocks.
    let restored = Fixture::restored(&fx.path("r2"), &file);
    let blocks = std::os::unix::fs::MetadataExt::blocks(&fs::metadata(&restored).unwrap());
    assert!(
        blocks * 512 < second.len() as u64 - 2 * MB as u64,
        "{blocks} blocks allocated for {} bytes with a 3 MiB zero run",
        second.len()
    );
}

/// From S3, every pack a large file needs is read with one GET: its 2 MiB spans are cut out
/// of one streamed response, which also brings the pack's age header (counted in moto's
/// request log, which names the fixture's own bucket).
#[test]
fn from_s3_each_pack_is_read_with_one_request_and_restores_byte_exact() {
    let fx = Fixture::on_with(Backend::S3, &["--pack-size", "8"]);
    let Store::S3 { bucket, .. } = &fx.store else {
        unreachable!("an S3 fixture");
    };
    let src = fx.path("src");
    let file = src.join("big.bin");
    let data = random_bytes(21, 20 * MB);
    write_file(&file, &data);
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let packs = fx.store.names("data");
    assert!(packs.len() >= 3, "{packs:?}");
    let data_gets = || {
        cairn_e2e::s3::shared()
            .log()
            .lines()
            .filter(|l| l.contains(&format!("\"GET /{bucket}/")) && l.contains("/data/"))
            .count()
    };
    assert_eq!(data_gets(), 0, "the backup read no pack");
    assert!(restored_bytes(&fx, &snap, &fx.path("r"), &file) == data);
    // moto's log lines arrive through a pipe: wait for them.
    let start = std::time::Instant::now();
    while data_gets() < packs.len() && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        data_gets(),
        packs.len(),
        "one GET per pack; moto's log:\n{}",
        cairn_e2e::s3::shared().log()
    );
}

#[test]
fn a_damaged_pack_fails_the_threaded_restore_and_leaves_no_file() {
    damaged_pack_fails_and_leaves_no_file(Backend::Local);
}

#[test]
fn a_damaged_pack_fails_the_restore_from_s3_mid_span_and_leaves_no_file() {
    damaged_pack_fails_and_leaves_no_file(Backend::S3);
}

fn damaged_pack_fails_and_leaves_no_file(backend: Backend) {
    damaged_fails_and_leaves_no_file(backend, |store, victim| store.flip_byte(victim));
}

/// Restores decrypt age chunks in their read buffers (format/src/payload.rs), reused from span
/// to span: the tag of a pack's last chunk changed, and a pack cut at a chunk boundary (its
/// new last chunk was not sealed as the last), each fail the restore naming the pack.
#[test]
fn a_changed_last_tag_or_a_pack_cut_at_a_chunk_boundary_fails_the_restore() {
    damaged_fails_and_leaves_no_file(Backend::Local, |store, victim| {
        let mut b = store.read(victim).unwrap();
        let n = b.len();
        b[n - 1] ^= 1;
        store.write(victim, &b);
    });
    for backend in [Backend::Local, Backend::S3] {
        damaged_fails_and_leaves_no_file(backend, |store, victim| {
            let b = store.read(victim).unwrap();
            let start = payload_start(&b);
            let full = (b.len() - start) / CHUNK_STORED;
            assert!(full >= 2, "{} bytes", b.len());
            store.truncate(victim, start + (full - 1) * CHUNK_STORED);
        });
    }
}

/// Stored bytes of a full age chunk.
const CHUNK_STORED: usize = 65_536 + 16;

/// Where an age file's payload starts: after the header's MAC line and the 16-byte nonce.
fn payload_start(age: &[u8]) -> usize {
    let mac = age
        .windows(5)
        .position(|w| w == b"\n--- ")
        .expect("age header");
    let end = mac
        + 1
        + age[mac + 1..]
            .iter()
            .position(|&c| c == b'\n')
            .expect("MAC line");
    end + 1 + 16
}

fn damaged_fails_and_leaves_no_file(backend: Backend, damage: impl Fn(&Store, &str)) {
    let fx = Fixture::on_with(backend, &["--pack-size", "1"]);
    let src = fx.path("src");
    let file = src.join("big.bin");
    write_file(&file, &random_bytes(11, 8 * MB));
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let data = fx.store.names("data");
    assert!(data.len() > 4, "{data:?}");
    let victim = &data[data.len() / 2];
    damage(&fx.store, victim);
    let target = fx.path("restored");
    let out = fx.restore(&snap, &target, &[]);
    out.failed().stderr_has(&[victim]);
    assert!(!Fixture::restored(&target, &file).exists());
    let leftovers: Vec<_> = fs::read_dir(Fixture::restored(&target, &src))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// 150 directories of small files and read-only modes: the files go to worker threads
/// (store/src/restore/file_pool.rs) and the directories' metadata waits for them (deferred past
/// several flushes of 64); contents, modes and nanosecond times come back exact.
#[test]
fn many_small_files_restore_exact_with_directory_times_set_after_their_files() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::on(Backend::Local);
    let src = fx.path("src");
    for d in 0..150u64 {
        let dir = src.join(format!("d{:03}/sub", d));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..3u64 {
            write_file(
                &dir.join(format!("f{f}")),
                &random_bytes(d * 10 + f, 100 + (d * 37 + f) as usize % 5000),
            );
        }
        if d % 7 == 0 {
            fs::set_permissions(dir.join("f0"), fs::Permissions::from_mode(0o400)).unwrap();
        }
    }
    stamp_mtimes(&src, 1_600_000_000);
    // A read-only directory (its files are made before its mode is set).
    fs::set_permissions(src.join("d001/sub"), fs::Permissions::from_mode(0o555)).unwrap();
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let target = fx.path("restored");
    fx.restore(&snap, &target, &[]).ok();
    let restored = Fixture::restored(&target, &src);
    let diffs = compare_trees(&src, &restored);
    fs::set_permissions(src.join("d001/sub"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(restored.join("d001/sub"), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
}

/// A damaged data pack among many small files written by the workers: the restore fails
/// naming the pack, and no temporary file is left anywhere.
#[test]
fn a_damaged_pack_fails_a_restore_of_many_small_files_without_leftovers() {
    let fx = Fixture::on_with(Backend::Local, &["--pack-size", "1"]);
    let src = fx.path("src");
    for d in 0..40u64 {
        for f in 0..10u64 {
            write_file(
                &src.join(format!("d{d:02}/f{f}")),
                &random_bytes(1000 + d * 10 + f, 20_000),
            );
        }
    }
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let data = fx.store.names("data");
    assert!(data.len() > 4, "{data:?}");
    let victim = &data[data.len() / 2];
    fx.store.flip_byte(victim);
    let target = fx.path("restored");
    fx.restore(&snap, &target, &[])
        .failed()
        .stderr_has(&[victim]);
    let mut stack = vec![target.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".cairn-restore"),
                "{} left",
                e.path().display()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}
