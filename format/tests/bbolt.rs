//! etcd snapshot inspection against the real thing: snapshots taken by Debian's etcd, compared
//! with what `etcdctl snapshot status -w json` says about them, then damaged in every way we can
//! think of. Skipped (with a note) when `etcd`/`etcdctl` are not installed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::io::{Cursor, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cairn_format::bbolt::{
    self, check_trailer, db_len, has_valid_trailer, inspect, inspect_bytes, split_trailer,
    verify_trailer, BboltError, MetaFault, SnapshotStatus, StreamInspector, SummaryStore,
    TrailerStatus,
};

/// Counts heap bytes in use, and their peak, for the benchmark's memory figure.
struct CountingAlloc;

static HEAP: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

fn heap_grew(by: usize) {
    let now = HEAP.fetch_add(by, Ordering::Relaxed) + by;
    HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            heap_grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
            heap_grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Etcd {
    child: Child,
    endpoint: String,
    data_dir: PathBuf,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let data_dir = dir.join("data");
        for _ in 0..5 {
            let (client, peer) = (free_port(), free_port());
            let endpoint = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = fs::File::create(dir.join("etcd.log")).unwrap();
            let child = Command::new("etcd")
                .args(["--name", "cairn-test", "--data-dir"])
                .arg(&data_dir)
                .args(["--listen-client-urls", &endpoint])
                .args(["--advertise-client-urls", &endpoint])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("cairn-test={peer_url}")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start etcd");
            let mut etcd = Etcd {
                child,
                endpoint,
                data_dir: data_dir.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = etcd.child.try_wait() {
                    break; // port race: try again with other ports
                }
                let out = etcd.ctl_output(&["endpoint", "health"], None);
                if out.status.success() {
                    return etcd;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = etcd.child.kill();
            let _ = etcd.child.wait();
            let _ = fs::remove_dir_all(&data_dir);
        }
        panic!(
            "etcd did not become healthy; log:\n{}",
            fs::read_to_string(dir.join("etcd.log")).unwrap_or_default()
        );
    }

    fn ctl_output(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint, "--command-timeout", "20s"])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run etcdctl");
        if let Some(data) = stdin {
            child.stdin.take().unwrap().write_all(data).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn ctl(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.ctl_output(args, stdin);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn revision(&self) -> i64 {
        let out = self.ctl(&["endpoint", "status", "-w", "json"], None);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["Status"]["header"]["revision"].as_i64().unwrap()
    }

    fn snapshot(&self, path: &Path) {
        self.ctl(&["snapshot", "save", path.to_str().unwrap()], None);
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn word(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

/// Puts keys through `etcdctl txn`, 100 operations per transaction.
fn put_many(etcd: &Etcd, rng: &mut Rng, keys: &[String]) {
    for batch in keys.chunks(100) {
        let mut script = String::from("\n");
        for k in batch {
            let len = 50 + rng.below(700) as usize;
            script.push_str(&format!("put {k} {}\n", rng.word(len)));
        }
        script.push_str("\n\n");
        etcd.ctl(&["txn"], Some(script.as_bytes()));
    }
}

/// What `etcdctl snapshot status -w json` says.
fn etcdctl_status(path: &Path) -> (u32, i64, u64, u64) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl snapshot status {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["hash"].as_u64().unwrap() as u32,
        v["revision"].as_i64().unwrap(),
        v["totalKey"].as_u64().unwrap(),
        v["totalSize"].as_u64().unwrap(),
    )
}

/// Feeds `bytes` to a [`StreamInspector`] in pieces of `piece` bytes (0: random sizes up to
/// 256 KiB, the last piece whatever is left). Every other time at random the inspector keeps
/// only the first few pages' summaries and hands the rest to a store of records.
fn stream(bytes: &[u8], piece: usize, rng: &mut Rng) -> Result<SnapshotStatus, BboltError> {
    if rng.below(2) == 0 {
        feed(StreamInspector::new(), bytes, piece, rng)
    } else {
        let bound = rng.below(64);
        feed(
            StreamInspector::with_store(Vec::<u8>::new(), bound),
            bytes,
            piece,
            rng,
        )
    }
}

fn feed<S: SummaryStore>(
    mut s: StreamInspector<S>,
    bytes: &[u8],
    piece: usize,
    rng: &mut Rng,
) -> Result<SnapshotStatus, BboltError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = match piece {
            0 => 1 + rng.below(256 << 10) as usize,
            n => n,
        };
        let (now, later) = rest.split_at(n.min(rest.len()));
        s.update(now);
        rest = later;
    }
    s.finish()
}

/// Inspects a file through Read + Seek, as the CLI does, and as a stream, as a live backup does,
/// and checks every entry point agrees.
fn cairn_status(path: &Path) -> SnapshotStatus {
    let mut f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let st = inspect(&mut f, db_len(len)).unwrap();
    assert_eq!(inspect(&mut f, len).unwrap(), st, "trailer must not matter");
    let bytes = fs::read(path).unwrap();
    assert_eq!(inspect_bytes(&bytes).unwrap(), st);
    let mut rng = Rng(len | 1);
    for piece in [1, 7, 4096, 65537, usize::MAX, 0, 0] {
        let streamed = stream(&bytes, piece, &mut rng)
            .unwrap_or_else(|e| panic!("{}: stream in pieces of {piece}: {e}", path.display()));
        assert_eq!(
            streamed,
            st,
            "{}: stream in pieces of {piece}",
            path.display()
        );
    }
    st
}

fn compare(name: &str, path: &Path) -> SnapshotStatus {
    let theirs = etcdctl_status(path);
    let st = cairn_status(path);
    let ours = (st.hash, st.revision, st.total_key, st.total_size);
    println!(
        "{name:<22} etcdctl hash={:<10} revision={:<5} totalKey={:<5} totalSize={:<8} | \
         cairn hash={:<10} revision={:<5} totalKey={:<5} totalSize={:<8} (txid {}, page {})",
        theirs.0,
        theirs.1,
        theirs.2,
        theirs.3,
        ours.0,
        ours.1,
        ours.2,
        ours.3,
        st.txid,
        st.page_size
    );
    assert_eq!(ours, theirs, "{name}: cairn and etcdctl disagree");
    st
}

fn check_saved_snapshot(name: &str, path: &Path) -> SnapshotStatus {
    let st = compare(name, path);
    let bytes = fs::read(path).unwrap();
    assert_eq!(bytes.len() as u64, st.total_size + bbolt::TRAILER_LEN);
    assert!(verify_trailer(&bytes), "{name}: trailer");
    let mut f = fs::File::open(path).unwrap();
    assert!(has_valid_trailer(&mut f, bytes.len() as u64).unwrap());
    st
}

#[test]
fn matches_etcdctl_on_real_snapshots_and_survives_damage() {
    if !have("etcd") || !have("etcdctl") {
        println!("note: etcd/etcdctl not installed, skipping the real-etcd bbolt test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(dir.path());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // A fresh cluster.
    let s0 = dir.path().join("s0.db");
    etcd.snapshot(&s0);
    check_saved_snapshot("fresh", &s0);

    // A Kubernetes-like keyspace: 6000 keys, a few large values (overflow pages), a lease.
    let keys: Vec<String> = (0..6000)
        .map(|i| format!("/registry/pods/ns-{:02}/pod-{i:05}", i % 20))
        .collect();
    put_many(&etcd, &mut rng, &keys);
    for i in 0..3 {
        let big = rng.word(200_000 + i * 50_000);
        etcd.ctl(
            &["put", &format!("/registry/configmaps/big/{i}")],
            Some(big.as_bytes()),
        );
    }
    let lease = etcd.ctl(&["lease", "grant", "3600"], None);
    let lease_id = lease.split_whitespace().nth(1).unwrap().to_string();
    etcd.ctl(
        &["put", "--lease", &lease_id, "/registry/leases/l1", "held"],
        None,
    );
    let s1 = dir.path().join("s1.db");
    etcd.snapshot(&s1);
    let st1 = check_saved_snapshot("loaded", &s1);
    assert_eq!(st1.revision, etcd.revision());

    // Updates, deletions (tombstones), then a compaction.
    let updated: Vec<String> = keys.iter().step_by(7).cloned().collect();
    put_many(&etcd, &mut rng, &updated);
    etcd.ctl(&["del", "--prefix", "/registry/pods/ns-03/"], None);
    etcd.ctl(&["del", "/registry/configmaps/big/1"], None);
    let s2a = dir.path().join("s2a.db");
    etcd.snapshot(&s2a);
    check_saved_snapshot("updated+deleted", &s2a);
    let rev = etcd.revision();
    etcd.ctl(&["compact", &rev.to_string(), "--physical"], None);
    let s2 = dir.path().join("s2.db");
    etcd.snapshot(&s2);
    let st2 = check_saved_snapshot("compacted", &s2);
    // etcd's "revision" is the newest revision still stored, not the store's current revision:
    // the compaction removed the two deletions' tombstones (the newest revisions), so it went
    // back to the last put.
    assert!(st2.revision < rev, "{} vs {rev}", st2.revision);

    // Defragmentation rewrites the file from scratch.
    etcd.ctl(&["defrag"], None);
    let s3 = dir.path().join("s3.db");
    etcd.snapshot(&s3);
    check_saved_snapshot("defragmented", &s3);

    // The live database file itself (no trailer; after more writes, bbolt has usually grown the
    // file past its high-water mark).
    let more: Vec<String> = (0..1500)
        .map(|i| format!("/registry/events/e{i:05}"))
        .collect();
    put_many(&etcd, &mut rng, &more);
    etcd.stop();
    let live = etcd.data_dir.join("member/snap/db");
    let st = compare("live member db", &live);
    let live_len = fs::metadata(&live).unwrap().len();
    println!(
        "live member db: file {live_len} bytes, database {} bytes",
        st.total_size
    );

    damage(&fs::read(&s2).unwrap());
}

/// Pages of `db` with the given flag bit (page headers at each page boundary).
fn pages_with_flag(db: &[u8], ps: usize, flag: u16) -> Vec<usize> {
    (0..db.len() / ps)
        .filter(|&i| {
            let at = i * ps;
            u64::from_le_bytes(db[at..at + 8].try_into().unwrap()) == i as u64
                && u16::from_le_bytes([db[at + 8], db[at + 9]]) & flag != 0
        })
        .collect()
}

fn damage(file: &[u8]) {
    let (db, _) = split_trailer(file).expect("saved snapshots have a trailer");
    let good = inspect_bytes(db).unwrap();
    let ps = good.page_size as usize;

    // Trailer: a flipped database byte is caught by the sha256, not necessarily by inspection.
    let mut f = file.to_vec();
    f[3 * ps + 100] ^= 1;
    let mut c = Cursor::new(&f);
    assert!(matches!(
        check_trailer(&mut c, f.len() as u64).unwrap(),
        TrailerStatus::Mismatch { .. }
    ));
    let mut c = Cursor::new(&file[..file.len() - 1]);
    assert_eq!(
        check_trailer(&mut c, file.len() as u64 - 1).unwrap(),
        TrailerStatus::Absent
    );

    // One damaged meta page: bbolt (and cairn) fall back to the other, an older txid.
    let mut d = db.to_vec();
    d[16 + 20] ^= 0xff;
    let st = inspect_bytes(&d).unwrap();
    assert_eq!(
        (st.hash, st.total_key, st.revision),
        (good.hash, good.total_key, good.revision)
    );
    assert_eq!(st.txid, good.txid - 1);
    // Both damaged.
    d[ps + 16 + 20] ^= 0xff;
    let err = inspect_bytes(&d).unwrap_err();
    assert!(
        matches!(
            err,
            BboltError::BadMeta {
                meta0: MetaFault::BadChecksum { .. },
                meta1: MetaFault::BadChecksum { .. }
            }
        ),
        "{err}"
    );
    println!("both metas damaged: {err}");
    // Magic gone from both.
    let mut d = db.to_vec();
    d[16] ^= 0xff;
    d[ps + 16] ^= 0xff;
    assert!(matches!(inspect_bytes(&d), Err(BboltError::NotBbolt)));

    // Truncation anywhere.
    for cut in [
        0,
        1,
        4095,
        ps,
        2 * ps,
        db.len() / 2,
        db.len() - ps,
        db.len() - 1,
    ] {
        let err = inspect_bytes(&db[..cut]).unwrap_err();
        if cut == db.len() - 1 {
            println!("truncated by one byte: {err}");
            assert!(matches!(err, BboltError::Truncated { .. }));
        }
        // A stream cut short: the same error.
        let streamed = stream(&db[..cut], 65536, &mut Rng(1)).unwrap_err();
        assert_eq!(format!("{streamed:?}"), format!("{err:?}"), "cut at {cut}");
    }

    // A branch page pointing at itself: a cycle, reported, not followed.
    let branches = pages_with_flag(db, ps, 0x01);
    assert!(!branches.is_empty(), "6000 keys need branch pages");
    let mut cycles = 0;
    for &b in &branches {
        let mut d = db.to_vec();
        let at = b * ps + 16 + 8;
        d[at..at + 8].copy_from_slice(&(b as u64).to_le_bytes());
        match inspect_bytes(&d) {
            Err(BboltError::MultipleReferences { pgid }) => {
                assert_eq!(pgid, b as u64);
                cycles += 1;
            }
            // A stale branch among the free pages is not part of the tree.
            Ok(st) => assert_eq!(st, good),
            Err(e) => panic!("branch {b} pointing at itself: unexpected {e}"),
        }
    }
    assert!(cycles > 0, "no live branch page found");
    println!(
        "branch pointing at itself: {cycles} of {} branch pages live, all caught",
        branches.len()
    );

    // A branch pointing beyond the file, and one claiming an enormous overflow.
    for &b in &branches {
        let mut d = db.to_vec();
        let at = b * ps + 16 + 8;
        d[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        if let Err(e) = inspect_bytes(&d) {
            assert!(matches!(e, BboltError::PageOutOfRange { .. }), "{e}");
        }
        let mut d = db.to_vec();
        d[b * ps + 12..b * ps + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        if let Err(e) = inspect_bytes(&d) {
            assert!(matches!(e, BboltError::PageOutOfRange { .. }), "{e}");
        }
    }

    // Random damage: never a panic, never a hang; the stream (for one copy in five) reaches the
    // same verdict.
    let mut rng = Rng(42);
    let started = Instant::now();
    for i in 0..1000 {
        let mut d = db.to_vec();
        let flips = 1 + rng.below(4);
        for _ in 0..flips {
            // Mostly page headers and element arrays, where the structure lives.
            let page = rng.below((db.len() / ps) as u64) as usize;
            let off = if rng.below(2) == 0 {
                rng.below(64) as usize
            } else {
                rng.below(ps as u64) as usize
            };
            d[page * ps + off] ^= 1 << rng.below(8);
        }
        let inspected = inspect_bytes(&d);
        if i % 5 == 0 {
            match (stream(&d, 0, &mut rng), inspected) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
                (a, b) => panic!("damaged copy {i}: stream {a:?}, inspect {b:?}"),
            }
        }
    }
    println!(
        "1000 randomly damaged copies inspected (200 also streamed) in {:?}",
        started.elapsed()
    );
}

/// Throughput and memory of the stream inspector on the largest snapshot ~20 s of writes make:
/// `cargo test --release -p cairn-format --test bbolt -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; run with --release --ignored --nocapture"]
fn stream_inspector_throughput() {
    if !have("etcd") || !have("etcdctl") {
        println!("note: etcd/etcdctl not installed, skipping the benchmark");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let mut rng = Rng(7);
    // Kubernetes-like objects of 1-8 KiB, rewritten now and then (so the file has freed pages
    // with stale contents), and a few values of ~1 MiB (overflow pages).
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(20) {
        let mut script = String::from("\n");
        for i in 0..100 {
            let n = (round * 100 + i) % 20_000;
            let key = format!("/registry/pods/ns-{:02}/pod-{n:07}", n % 20);
            let len = 1024 + rng.below(7 * 1024) as usize;
            script.push_str(&format!("put {key} {}\n", rng.word(len)));
        }
        script.push_str("\n\n");
        etcd.ctl(&["txn"], Some(script.as_bytes()));
        if round.is_multiple_of(10) {
            let big = rng.word(1_000_000);
            let key = format!("/registry/configmaps/big/{}", rng.below(50));
            etcd.ctl(&["put", &key], Some(big.as_bytes()));
        }
        round += 1;
    }
    let path = dir.path().join("big.db");
    etcd.snapshot(&path);
    let len = fs::metadata(&path).unwrap().len();
    println!(
        "snapshot: {:.1} MB after {round} rounds of writes",
        len as f64 / 1e6
    );
    let theirs = etcdctl_status(&path);

    // Read + Seek, for comparison.
    let t = Instant::now();
    let st = inspect(&mut fs::File::open(&path).unwrap(), len).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "inspect (Read + Seek): {:.0} MB/s ({secs:.2} s)",
        len as f64 / 1e6 / secs
    );
    assert_eq!((st.hash, st.revision, st.total_key, st.total_size), theirs);

    // The stream, in 64 KiB pieces from memory (the file is read first, outside the timing and
    // the memory figure).
    let bytes = fs::read(&path).unwrap();
    for _ in 0..3 {
        let base = HEAP.load(Ordering::Relaxed);
        HEAP_PEAK.store(base, Ordering::Relaxed);
        let t = Instant::now();
        let mut s = StreamInspector::new();
        for piece in bytes.chunks(64 << 10) {
            s.update(piece);
        }
        let streamed = s.finish().unwrap();
        let secs = t.elapsed().as_secs_f64();
        let extra = HEAP_PEAK.load(Ordering::Relaxed) - base;
        println!(
            "StreamInspector: {:.0} MB/s ({secs:.2} s), peak extra heap {:.1} MB \
             ({:.1} bytes per page of {} pages)",
            len as f64 / 1e6 / secs,
            extra as f64 / 1e6,
            extra as f64 / (len / u64::from(st.page_size)) as f64,
            len / u64::from(st.page_size)
        );
        assert_eq!(streamed, st);
    }
    // The same from the file, 1 MiB reads.
    let t = Instant::now();
    let mut f = fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut s = StreamInspector::new();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        s.update(&buf[..n]);
    }
    assert_eq!(s.finish().unwrap(), st);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "StreamInspector from the file: {:.0} MB/s ({secs:.2} s)",
        len as f64 / 1e6 / secs
    );
}
