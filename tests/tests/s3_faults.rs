//! Backups and restores of S3 repositories through a [`FaultProxy`] that cuts, drops and
//! stalls connections and refuses them for a while (a server restart).
//!
//! Whatever happens, a backup either completes or fails with exit code 1 and a message naming
//! the object and the server; it never leaves a snapshot whose data is missing: afterwards
//! `snapshots` (read directly from the server) lists exactly the backups that succeeded, and
//! every one of them restores byte-exact. The next backup through a healthy connection
//! succeeds.
//!
//! The data (~52 MB, mostly incompressible) goes into a repository of 40 MiB packs: one pack
//! uploaded as a multipart upload of 16 MiB parts, one smaller pack in a single request, plus
//! index, tree and snapshot objects: many requests, some large. cairn runs with `CAIRN_S3_TIMEOUT`=[`s3::TIMEOUT_SECS`] and
//! `CAIRN_S3_RETRIES`=[`s3::RETRIES`] unless a test says otherwise.

use cairn_e2e::s3::{self, Fault, FaultProxy, Trigger};
use cairn_e2e::versions::assert_restores;
use cairn_e2e::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MB: usize = 1_000_000;

/// A repository on the shared server, a proxy in front of the server, and the source tree.
struct Rig {
    fx: Fixture,
    proxy: FaultProxy,
    src: PathBuf,
    /// Snapshots whose backups reported success.
    good: Vec<String>,
}

impl Rig {
    fn new() -> Rig {
        let fx = Fixture::on_with(Backend::S3, &["--pack-size", "40"]);
        let src = fx.path("src");
        for i in 0..3u64 {
            write_file(
                &src.join(format!("etcd-{i}.db")),
                &random_bytes(0xfa17 + i, 16 * MB),
            );
        }
        write_file(&src.join("manifests/all.yaml"), &text_bytes(0xfa18, 4 * MB));
        for i in 0..40u64 {
            write_file(
                &src.join(format!("pki/cert-{i}.pem")),
                &random_bytes(0xfa19 + i, 3000),
            );
        }
        let proxy = FaultProxy::start(s3::shared().addr());
        Rig {
            fx,
            proxy,
            src,
            good: Vec::new(),
        }
    }

    /// cairn's environment through the proxy, with `extra` on top.
    fn via_proxy<'a>(&self, extra: &[(&'a str, &'a str)]) -> Env {
        let mut env = self.proxy.env();
        for (k, v) in extra {
            env.push((k.to_string(), (*v).into()));
        }
        env
    }

    /// `backup --json` of the source through the proxy.
    fn backup(&mut self, extra: &[(&str, &str)]) -> (Output, Duration) {
        let env = self.via_proxy(extra);
        let t = Instant::now();
        let out = self
            .fx
            .wk_env(&["--json", "backup", s(&self.src)], &env_refs(&env));
        let took = t.elapsed();
        if out.code == 0 {
            self.good.push(Fixture::snap_id(&out.json()));
        }
        (out, took)
    }

    /// `restore` of `snap` through the proxy into `name`: the outcome, the target and how
    /// long it took.
    fn restore(
        &self,
        snap: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> (Output, PathBuf, Duration) {
        let env = self.via_proxy(extra);
        let target = self.fx.path(name);
        let mut a = vec!["-r", s(&self.fx.repo), "-i", s(&self.fx.identity)];
        a.extend(["restore", snap, "--target", s(&target)]);
        let t = Instant::now();
        let out = self.fx.run_env(&a, &env_refs(&env));
        (out, target, t.elapsed())
    }

    /// The backup failed as it should: exit code 1, and a message naming an object of the
    /// repository, the repository and the server it could not reach.
    #[track_caller]
    fn failed_cleanly(&self, out: &Output) {
        out.code_is(1).stderr_has(&[s(&self.fx.repo)]);
        let e = &out.stderr;
        assert!(
            [
                "data/",
                "tree/",
                "index/",
                "snapshots/",
                "locks/",
                "config",
                "keys/"
            ]
            .iter()
            .any(|o| e.contains(o)),
            "the error names no object\n{out}"
        );
        assert!(
            e.contains(&format!("127.0.0.1:{}", self.proxy.port())),
            "the error does not name the server\n{out}"
        );
        assert!(
            !e.contains("damaged"),
            "a network failure is not damage\n{out}"
        );
        assert!(
            !out.stdout.contains("\"snapshot\""),
            "a failed backup reported a snapshot\n{out}"
        );
    }

    /// Directly on the server (no proxy): `snapshots` lists exactly the backups that
    /// succeeded, and each restores byte-exact.
    #[track_caller]
    fn verify(&self) {
        // Whatever the faults did, the repository is intact: structure, every pack's name,
        // decryption and every blob (packs left by failed backups are notes, not damage).
        let v = self.fx.id(&["--json", "check", "--read-data"]).ok().json();
        assert_eq!(v["clean"], true, "{v:#}");
        let out = self.fx.wk(&["--json", "snapshots"]);
        out.ok();
        let mut listed: Vec<String> = out
            .json()
            .as_array()
            .expect("snapshot list")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect();
        listed.sort();
        let mut good = self.good.clone();
        good.sort();
        assert_eq!(
            listed, good,
            "snapshots listed are not exactly those of the successful backups"
        );
        for snap in &self.good {
            assert_restores(&self.fx, s(&self.fx.repo), snap, &self.src, "verify");
        }
    }

    /// Multipart uploads left open in the repository's bucket.
    fn open_uploads(&self) -> Vec<(String, String)> {
        match &self.fx.store {
            Store::S3 { bucket, .. } => s3::shared().open_uploads(bucket),
            Store::Dir(_) => unreachable!("an S3 rig"),
        }
    }
}

#[test]
fn connections_cut_mid_request_are_retried_and_the_backup_completes() {
    let mut rig = Rig::new();
    // Connections are cut after 1 MB of request, as many times as cairn may retry one
    // request: requests of up to 16 MiB (16 MiB parts, the smaller pack in one PUT) break
    // mid-body, possibly the same one every time, and are retried.
    rig.proxy.set_limited(
        Fault::CutRequest {
            every: 1,
            after: MB as u64,
        },
        s3::RETRIES as u64,
    );
    let (out, _) = rig.backup(&[]);
    out.ok();
    // With --json, stderr is kept for the error object: retries are not said there.
    assert!(!out.stderr.contains("retry"), "{out}");
    let st = rig.proxy.stats();
    assert_eq!(
        st.cut,
        s3::RETRIES as u64,
        "the fault did not strike as planned: {st:?}"
    );
    assert!(st.bytes_up > 48 * MB as u64, "{st:?}");
    rig.verify();
    // The same again with unchanged data (the files cache: almost nothing is uploaded).
    rig.proxy.set_limited(
        Fault::CutRequest {
            every: 1,
            after: 300,
        },
        2,
    );
    rig.backup(&[]).0.ok();
    assert_eq!(rig.proxy.stats().cut, s3::RETRIES as u64 + 2);
    rig.verify();
}

#[test]
fn requests_that_can_never_get_through_fail_cleanly_and_abort_their_uploads() {
    let mut rig = Rig::new();
    // Every connection is cut after 1 MB of request: no 16 MiB part can ever arrive.
    rig.proxy.set(Fault::CutRequest {
        every: 1,
        after: MB as u64,
    });
    let (out, took) = rig.backup(&[]);
    rig.failed_cleanly(&out);
    out.stderr_has(&["data/"]);
    assert!(
        took < Duration::from_secs(120),
        "a hopeless backup took {took:?}"
    );
    rig.verify();
    assert_eq!(
        rig.open_uploads(),
        vec![],
        "failed multipart uploads were left open (the server keeps their parts)"
    );
    rig.proxy.set(Fault::Pass);
    rig.backup(&[]).0.ok();
    rig.verify();
}

#[test]
fn dropped_connections_are_retried_and_the_backup_completes() {
    let mut rig = Rig::new();
    // Every second new connection is accepted and closed unanswered, four times.
    rig.proxy.set_limited(Fault::DropEvery(2), 4);
    let (out, _) = rig.backup(&[]);
    out.ok();
    let st = rig.proxy.stats();
    assert_eq!(st.dropped, 4, "{st:?}");
    rig.verify();
}

#[test]
fn responses_cut_mid_download_are_retried_and_restores_are_byte_exact() {
    let mut rig = Rig::new();
    rig.backup(&[]).0.ok();
    let snap = rig.good[0].clone();
    // Connections are cut after 1 MB of responses, as many times as cairn may retry one
    // request (possibly the same read every time).
    rig.proxy.set_limited(
        Fault::CutResponse {
            every: 1,
            after: MB as u64,
        },
        s3::RETRIES as u64,
    );
    let (out, target, _) = rig.restore(&snap, "t-cut", &[]);
    // Each retry is said as it happens, not only at -v.
    out.ok().stderr_has(&["retry"]);
    assert_eq!(
        rig.proxy.stats().cut,
        s3::RETRIES as u64,
        "{:?}",
        rig.proxy.stats()
    );
    assert_trees_equal(&rig.src, &Fixture::restored(&target, &rig.src));
    // Hopeless: every response is cut after 100 KB. The restore fails, names what it could
    // not read, and leaves no half-written file under its final name.
    rig.proxy.set(Fault::CutResponse {
        every: 1,
        after: 100_000,
    });
    let (out, target, _) = rig.restore(&snap, "t-hopeless", &[]);
    out.code_is(1).stderr_has(&["data/", s(&rig.fx.repo)]);
    assert!(
        !out.stderr.contains("damaged"),
        "a broken connection is not a damaged object\n{out}"
    );
    let restored = Fixture::restored(&target, &rig.src);
    for f in files_below(&target) {
        let name = f.to_string_lossy().into_owned();
        assert!(
            !name.contains(".cairn-restore-"),
            "temporary file left: {name}"
        );
        let rel = f.strip_prefix(&restored).expect("below the target");
        assert_eq!(
            std::fs::read(&f).unwrap(),
            std::fs::read(rig.src.join(rel)).unwrap(),
            "{name} was left with wrong content"
        );
    }
    rig.verify();
}

#[test]
fn stalled_responses_time_out_and_are_retried() {
    let mut rig = Rig::new();
    // Every second connection holds its responses for 6 s, three times in all; requests
    // time out after 2 s.
    rig.proxy.set_limited(
        Fault::Stall {
            every: 2,
            delay: Duration::from_secs(6),
        },
        3,
    );
    let (out, took) = rig.backup(&[("CAIRN_S3_TIMEOUT", "2")]);
    out.ok();
    let st = rig.proxy.stats();
    assert_eq!(st.stalled, 3, "{st:?}");
    assert!(took < Duration::from_secs(150), "took {took:?}");
    rig.verify();
}

#[test]
fn a_slow_but_steady_link_never_times_out() {
    let mut rig = Rig::new();
    // 2 MB/s a connection: a 16 MiB part takes ~8 s, far more than the 3 s timeout, and no
    // request may fail (no retries): only a link that stops moving times out.
    rig.proxy.set(Fault::Throttle(2 * MB as u64));
    let (out, took) = rig.backup(&[("CAIRN_S3_TIMEOUT", "3"), ("CAIRN_S3_RETRIES", "0")]);
    out.ok();
    eprintln!("note: the backup through the slow link took {took:?}");
    rig.verify();
}

/// What a request that stalled says: how long nothing moved, while doing what, and what to do.
#[track_caller]
fn names_the_stall(out: &Output, secs: u64, during: &str) {
    let said = format!("no bytes moved for {secs} s while {during}");
    assert!(
        out.stderr.contains(&said) && out.stderr.contains("raise --s3-timeout"),
        "expected \"{said}\" and what to do\n{out}"
    );
}

#[test]
fn an_upload_that_stops_moving_is_retried_or_given_up_within_the_timeout() {
    let mut rig = Rig::new();
    // Two connections go silent after 1 MB of request (a 16 MiB part, the smaller pack), open
    // but moving nothing: each stalled request is given up after 2 s and sent again on a new
    // connection.
    let freeze = Fault::FreezeRequest {
        every: 1,
        after: MB as u64,
    };
    rig.proxy.set_limited(freeze, 2);
    let (out, took) = rig.backup(&[("CAIRN_S3_TIMEOUT", "2")]);
    out.ok();
    assert_eq!(rig.proxy.stats().frozen, 2, "{:?}", rig.proxy.stats());
    assert!(took < Duration::from_secs(60), "took {took:?}");
    rig.verify();
    // Every connection goes silent (a new repository: all data to upload again): the backup
    // fails, saying why, bounded by the timeouts (each request: 2 attempts of 2 s without
    // progress, 1 s apart).
    let mut rig = Rig::new();
    rig.proxy.set(freeze);
    let (out, took) = rig.backup(&[("CAIRN_S3_TIMEOUT", "2"), ("CAIRN_S3_RETRIES", "1")]);
    rig.failed_cleanly(&out);
    names_the_stall(&out, 2, "sending the request");
    assert!(
        took < Duration::from_secs(60),
        "a stalled upload held the backup for {took:?}"
    );
    rig.proxy.set(Fault::Pass);
    rig.verify();
}

#[test]
fn a_download_that_stops_moving_is_retried_or_given_up_within_the_timeout() {
    let mut rig = Rig::new();
    rig.backup(&[]).0.ok();
    let snap = rig.good[0].clone();
    // Two connections go silent after 1 MB of response: the reads are given up after 2 s and
    // sent again.
    let freeze = Fault::FreezeResponse {
        every: 1,
        after: MB as u64,
    };
    rig.proxy.set_limited(freeze, 2);
    let short = [("CAIRN_S3_TIMEOUT", "2")];
    let (out, target, took) = rig.restore(&snap, "t-stall", &short);
    out.ok();
    assert_eq!(rig.proxy.stats().frozen, 2, "{:?}", rig.proxy.stats());
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_trees_equal(&rig.src, &Fixture::restored(&target, &rig.src));
    // Every connection goes silent mid-answer: the restore fails, saying why.
    rig.proxy.set(freeze);
    let (out, _, took) = rig.restore(
        &snap,
        "t-dead",
        &[("CAIRN_S3_TIMEOUT", "2"), ("CAIRN_S3_RETRIES", "1")],
    );
    out.code_is(1).stderr_has(&["data/", s(&rig.fx.repo)]);
    names_the_stall(&out, 2, "receiving the answer");
    assert!(
        took < Duration::from_secs(60),
        "a stalled download held the restore for {took:?}"
    );
}

#[test]
fn a_server_that_stops_answering_fails_the_backup_within_its_timeouts() {
    let mut rig = Rig::new();
    // After 20 MB, every response is held for 60 s: each request times out, retries too.
    rig.proxy.arm(
        20 * MB as u64,
        Trigger::Fault(Fault::Stall {
            every: 1,
            delay: Duration::from_secs(60),
        }),
    );
    let (timeout, retries) = (2u64, 2u64);
    let (out, took) = rig.backup(&[
        ("CAIRN_S3_TIMEOUT", &timeout.to_string()),
        ("CAIRN_S3_RETRIES", &retries.to_string()),
    ]);
    assert!(!rig.proxy.armed(), "the stall never began");
    rig.failed_cleanly(&out);
    // Bounded by the timeouts: a few requests in flight each give up after (retries + 1)
    // attempts; nothing waits for the 60 s stall.
    assert!(
        took < Duration::from_secs(55),
        "a silent server held the backup for {took:?}"
    );
    rig.proxy.set(Fault::Pass);
    rig.verify();
    rig.backup(&[]).0.ok();
    rig.verify();
}

/// The server restarts mid-backup: connections are refused for `outage`, the open ones cut.
fn restart_mid_backup(outage: Duration, timeout: u64, retries: u64) -> (Rig, Output, Duration) {
    let mut rig = Rig::new();
    rig.proxy.arm(25 * MB as u64, Trigger::Outage(outage));
    let (out, took) = rig.backup(&[
        ("CAIRN_S3_TIMEOUT", &timeout.to_string()),
        ("CAIRN_S3_RETRIES", &retries.to_string()),
    ]);
    assert!(!rig.proxy.armed(), "the outage never began");
    assert_eq!(rig.proxy.stats().outages, 1);
    (rig, out, took)
}

#[test]
fn a_server_restart_shorter_than_the_retry_budget_is_ridden_out() {
    // Down for 4 s: longer than one request's timeout (2 s), well within the retry budget
    // (8 retries, each at least 1 s after the last).
    let (rig, out, _) = restart_mid_backup(Duration::from_secs(4), 2, 8);
    assert!(
        rig.proxy.wait_listening(Duration::from_secs(30)),
        "the outage never ended"
    );
    out.ok();
    rig.verify();
}

#[test]
fn a_long_server_outage_fails_cleanly_and_the_next_backup_succeeds() {
    let (mut rig, out, took) = restart_mid_backup(Duration::from_secs(300), 2, 3);
    eprintln!("note: the backup gave up after {took:?}");
    rig.failed_cleanly(&out);
    // Each request gives up after 4 attempts of at most 2 s and ~7 s of backoff (with
    // jitter); a failing backup makes a few of them one after another (the pack, then its
    // lease): 30-35 s here, 60 s once on a machine at load 6-8. What this must not do is wait
    // out the 300 s outage.
    assert!(
        took < Duration::from_secs(120),
        "an unreachable server held the backup for {took:?}"
    );
    // The server is back.
    rig.proxy.end_outage();
    assert!(rig.proxy.wait_listening(Duration::from_secs(30)));
    rig.verify();
    let before = rig.fx.repo_bytes();
    let (out, _) = rig.backup(&[]);
    out.ok();
    eprintln!(
        "note: the backup after the outage added {} bytes ({} were stored before it)",
        rig.fx.repo_bytes() - before,
        before
    );
    rig.verify();
}
