//! etcd snapshot inspection against the real thing: snapshots taken by Debian's etcd, compared
//! with what `etcdctl snapshot status -w json` says about them, then damaged in every way we can
//! think of. Skipped (with a note) when `etcd`/`etcdctl` are not installed.

use std::fs;
use std::io::{Cursor, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_format::bbolt::{
    self, check_trailer, db_len, has_valid_trailer, inspect, inspect_bytes, split_trailer,
    verify_trailer, BboltError, MetaFault, SnapshotStatus, TrailerStatus,
};

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

/// Inspects a file through Read + Seek, as the CLI does, and checks every entry point agrees.
fn cairn_status(path: &Path) -> SnapshotStatus {
    let mut f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let st = inspect(&mut f, db_len(len)).unwrap();
    assert_eq!(inspect(&mut f, len).unwrap(), st, "trailer must not matter");
    let bytes = fs::read(path).unwrap();
    assert_eq!(inspect_bytes(&bytes).unwrap(), st);
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

    // Random damage: never a panic, never a hang.
    let mut rng = Rng(42);
    let started = Instant::now();
    for _ in 0..1000 {
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
        let _ = inspect_bytes(&d);
    }
    println!(
        "1000 randomly damaged copies inspected in {:?}",
        started.elapsed()
    );
}
