//! S3 repositories on a real local S3 server (moto): what is specific to object stores —
//! locations with and without a prefix, `init` on an existing repository, unreachable and
//! silent endpoints, missing buckets, secrets in output — and the test infrastructure itself
//! (the server's lifecycle, the fault proxy's modes), so that the fault tests can fail.

use cairn_e2e::s3::{self, Fault, FaultProxy, S3Server, Trigger};
use cairn_e2e::*;
use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// True while a process with this id exists (and is not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn moto_server_restarts_on_its_port_and_dies_with_its_owner() {
    let mut server = S3Server::start();
    let port = server.port();
    let pid = server.pid().expect("running");
    server.create_bucket("lifecycle");
    server.put("lifecycle", "dir/a b+c", b"first");
    assert_eq!(
        server.get("lifecycle", "dir/a b+c").as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        server.list("lifecycle", "dir/"),
        vec![("dir/a b+c".to_string(), 5)]
    );
    assert_eq!(server.list("lifecycle", "other/"), vec![]);
    // Listing pages through more than one response (moto returns 1000 keys per page).
    for i in 0..1005 {
        server.put("lifecycle", &format!("many/{i:04}"), b"");
    }
    assert_eq!(server.list("lifecycle", "many/").len(), 1005);

    server.restart();
    assert_eq!(server.port(), port, "restart keeps the port");
    let pid2 = server.pid().expect("running again");
    assert_ne!(pid, pid2);
    assert!(!alive(pid), "the first server process is still there");
    // moto is in-memory: a restart loses everything (so outages are simulated by the proxy).
    let r = s3::http(server.addr(), "GET", "/lifecycle/dir/a%20b%2Bc", b"").unwrap();
    assert_eq!(r.status, 404);

    drop(server);
    assert!(!alive(pid2), "moto outlived its S3Server");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers after drop"
    );
}

#[test]
fn fault_proxy_modes_do_what_they_say() {
    let server = s3::shared();
    let bucket = s3::fresh_bucket("proxy");
    let body: Vec<u8> = random_bytes(11, 300_000);
    server.put(&bucket, "obj", &body);
    let proxy = FaultProxy::start(server.addr());
    let get = |p: &FaultProxy| s3::http(p.addr(), "GET", &format!("/{bucket}/obj"), b"");

    // Pass: byte-exact, counted.
    let r = get(&proxy).unwrap();
    assert_eq!((r.status, r.body == body), (200, true));
    let st = proxy.stats();
    assert_eq!(st.connections, 1);
    assert!(st.bytes_down > 300_000 && st.bytes_up > 20, "{st:?}");

    // Responses cut after 1000 bytes: the client gets less than the whole object.
    proxy.set(Fault::CutResponse {
        every: 1,
        after: 1000,
    });
    if let Ok(r) = get(&proxy) {
        assert!(r.body.len() < body.len(), "uncut response");
    }
    assert_eq!(proxy.stats().cut, 1);

    // Requests cut after 100 bytes: an upload never arrives.
    proxy.set(Fault::CutRequest {
        every: 1,
        after: 100,
    });
    let put = s3::http(proxy.addr(), "PUT", &format!("/{bucket}/cut"), &body);
    assert!(put.is_err() || put.unwrap().status != 200);
    assert_eq!(server.get(&bucket, "cut"), None, "a cut upload was stored");
    assert_eq!(proxy.stats().cut, 2);

    // Every second connection dropped unanswered.
    proxy.set(Fault::DropEvery(2));
    assert!(get(&proxy).is_ok());
    assert!(get(&proxy).is_err(), "connection 2 should be dropped");
    assert!(get(&proxy).is_ok());
    assert_eq!(proxy.stats().dropped, 1);

    // Stalled responses arrive late but intact.
    proxy.set(Fault::Stall {
        every: 1,
        delay: Duration::from_millis(700),
    });
    let t = Instant::now();
    let r = get(&proxy).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(700));
    assert!(r.body == body);
    assert_eq!(proxy.stats().stalled, 1);

    // A limited fault: two drops, then everything passes again.
    proxy.set_limited(Fault::DropEvery(1), 2);
    assert!(get(&proxy).is_err());
    assert!(get(&proxy).is_err());
    assert!(get(&proxy).unwrap().body == body);
    assert!(get(&proxy).unwrap().body == body);
    assert_eq!(proxy.stats().dropped, 3);

    // An outage: connections refused, then accepted again on the same port.
    proxy.set(Fault::Pass);
    proxy.outage(Duration::from_millis(800));
    assert!(proxy.wait_refusing(Duration::from_secs(5)));
    assert!(
        TcpStream::connect(proxy.addr()).is_err(),
        "connected during an outage"
    );
    assert!(proxy.wait_listening(Duration::from_secs(10)));
    assert!(get(&proxy).unwrap().body == body);

    // An armed trigger fires once enough request bytes passed.
    let before = proxy.stats();
    proxy.arm(
        before.bytes_up + 50_000,
        Trigger::Fault(Fault::DropEvery(1)),
    );
    assert!(get(&proxy).is_ok(), "fired too early");
    assert!(proxy.armed());
    assert!(s3::http(proxy.addr(), "PUT", &format!("/{bucket}/big"), &body).is_ok());
    assert!(!proxy.armed());
    assert!(get(&proxy).is_err(), "the armed fault did not take effect");
}

/// An identity, its recipient and a scratch directory, without any repository.
struct Keys {
    tmp: Scratch,
    identity: std::path::PathBuf,
    recipient: String,
}

fn keys() -> Keys {
    let tmp = scratch();
    let identity = tmp.path().join("id.txt");
    let out = cairn(&["key", "generate", "-o", s(&identity)], &[]);
    out.ok();
    Keys {
        recipient: out.stdout.trim().to_string(),
        identity,
        tmp,
    }
}

/// Run cairn with `env` (an S3 environment) plus `extra`.
fn run(args: &[&str], env: &Env, extra: &[(&str, &OsStr)]) -> Output {
    let mut e = env_refs(env);
    e.extend_from_slice(extra);
    cairn(args, &e)
}

/// Back up `src` into `repo` with the identity, restore the latest snapshot, compare.
fn backup_and_restore(repo: &str, k: &Keys, src: &Path, target: &str) {
    let env = s3::shared().env();
    let id = s(&k.identity);
    run(&["-r", repo, "-i", id, "backup", s(src)], &env, &[]).ok();
    let t = k.tmp.path().join(target);
    run(
        &["-r", repo, "-i", id, "restore", "latest", "--target", s(&t)],
        &env,
        &[],
    )
    .ok();
    assert_trees_equal(src, &Fixture::restored(&t, src));
}

#[test]
fn init_on_an_existing_s3_repository_is_refused_and_changes_nothing() {
    let fx = Fixture::on(Backend::S3);
    let src = fx.path("src");
    write_file(&src.join("f"), &random_bytes(3, 100_000));
    fx.backup(&[&src]);
    let before = fx.store.contents();
    assert!(before.iter().any(|(n, _)| n == "config"), "{before:?}");
    for args in [
        vec!["-r", s(&fx.repo), "init", "--recipient", &fx.recipient],
        vec![
            "-r",
            s(&fx.repo),
            "init",
            "--recipient",
            &fx.recipient,
            "--chunk-size",
            "128",
        ],
    ] {
        fx.run(&args)
            .code_is(1)
            .stderr_has(&["already", s(&fx.repo)]);
    }
    // A trailing slash names the same repository.
    let slash = format!("{}/", s(&fx.repo));
    fx.run(&["-r", &slash, "init", "--recipient", &fx.recipient])
        .code_is(1)
        .stderr_has(&["already"]);
    assert!(
        before == fx.store.contents(),
        "init on an existing repository modified it"
    );
    fx.id(&["snapshots"]).ok();
}

#[test]
fn bucket_root_and_neighbouring_prefixes_are_separate_repositories() {
    let k = keys();
    let bucket = s3::fresh_bucket("prefixes");
    let env = s3::shared().env();
    let src = k.tmp.path().join("src");
    write_file(&src.join("a.yaml"), &text_bytes(1, 50_000));
    // s3://bucket (no prefix), s3://bucket/team and s3://bucket/team-2: "team" is a prefix of
    // "team-2" as a string, not as a directory.
    let root = format!("s3://{bucket}");
    let team = format!("s3://{bucket}/team");
    let team2 = format!("s3://{bucket}/team-2");
    let nested = format!("s3://{bucket}/deep/er/repo");
    for repo in [&root, &team, &team2, &nested] {
        run(
            &["-r", repo, "init", "--recipient", &k.recipient],
            &env,
            &[],
        )
        .ok();
    }
    backup_and_restore(&team, &k, &src, "t-team");
    write_file(&src.join("b.yaml"), b"second");
    backup_and_restore(&team, &k, &src, "t-team-b");
    backup_and_restore(&nested, &k, &src, "t-nested");
    let count = |repo: &str| {
        let out = run(
            &["--json", "-r", repo, "-i", s(&k.identity), "snapshots"],
            &env,
            &[],
        );
        out.ok();
        out.json().as_array().unwrap().len()
    };
    assert_eq!(
        count(&root),
        0,
        "the bucket root sees another prefix's snapshots"
    );
    assert_eq!(count(&team), 2);
    assert_eq!(count(&team2), 0, "team-2 sees team's snapshots");
    assert_eq!(count(&nested), 1);
    backup_and_restore(&root, &k, &src, "t-root");
    assert_eq!(count(&root), 1);
    assert_eq!(count(&team), 2);
    // Every object sits below its repository's prefix.
    let keys: Vec<String> = s3::shared()
        .list(&bucket, "")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for top in ["config", "keys/", "snapshots/", "index/", "data/", "tree/"] {
        assert!(
            keys.iter().any(|k| k.starts_with(top)),
            "no {top} at the bucket root: {keys:?}"
        );
    }
    let allowed = |k: &str| {
        k.starts_with("team/")
            || k.starts_with("team-2/")
            || k.starts_with("deep/er/repo/")
            || [
                "config",
                "keys/",
                "snapshots/",
                "index/",
                "data/",
                "tree/",
                "locks/",
                "gc/",
            ]
            .iter()
            .any(|t| k.starts_with(t))
    };
    let stray: Vec<&String> = keys.iter().filter(|k| !allowed(k)).collect();
    assert!(
        stray.is_empty(),
        "objects outside any repository: {stray:?}"
    );
}

#[test]
fn unreachable_endpoint_fails_with_exit_1_naming_it() {
    let k = keys();
    let closed = s3::free_port();
    let endpoint = format!("http://127.0.0.1:{closed}");
    let env = s3::env_for(&endpoint);
    let t = Instant::now();
    for args in [
        vec![
            "-r",
            "s3://somewhere/repo",
            "init",
            "--recipient",
            &k.recipient,
        ],
        vec![
            "-r",
            "s3://somewhere/repo",
            "-i",
            s(&k.identity),
            "snapshots",
        ],
    ] {
        let out = run(&args, &env, &[]);
        out.code_is(1)
            .stderr_has(&[&format!("127.0.0.1:{closed}"), "s3://somewhere/repo"]);
    }
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "refused connections took {:?}",
        t.elapsed()
    );
}

#[test]
fn silent_endpoint_times_out_within_timeout_times_retries() {
    // A port that accepts connections (the kernel's backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = silent.local_addr().unwrap();
    let k = keys();
    let env = s3::env_for(&format!("http://{addr}"));
    let (timeout, retries) = (2u64, 1u32);
    let t = Instant::now();
    let out = run(
        &["-r", "s3://silent/repo", "-i", s(&k.identity), "snapshots"],
        &env,
        &[
            ("CAIRN_S3_TIMEOUT", OsStr::new(&timeout.to_string())),
            ("CAIRN_S3_RETRIES", OsStr::new(&retries.to_string())),
        ],
    );
    let took = t.elapsed();
    out.code_is(1)
        .stderr_has(&[&addr.to_string(), "s3://silent/repo"]);
    // (retries + 1) attempts of `timeout` each, plus backoff and start-up.
    let bound = Duration::from_secs(timeout * (retries as u64 + 1) + 10);
    assert!(took < bound, "took {took:?}, more than {bound:?}");
    assert!(
        took >= Duration::from_secs(timeout),
        "gave up after {took:?}, before one request's timeout"
    );
    drop(silent);
}

#[test]
fn missing_bucket_is_a_clear_error() {
    let k = keys();
    let env = s3::shared().env();
    let repo = "s3://no-such-bucket-e2e/repo";
    let out = run(
        &["-r", repo, "init", "--recipient", &k.recipient],
        &env,
        &[],
    );
    out.code_is(1)
        .stderr_has(&["no-such-bucket-e2e", "bucket does not exist"]);
    for args in [
        vec!["-r", repo, "-i", s(&k.identity), "snapshots"],
        vec!["-r", repo, "-i", s(&k.identity), "backup", s(k.tmp.path())],
    ] {
        run(&args, &env, &[])
            .code_is(1)
            .stderr_has(&["no-such-bucket-e2e", "bucket does not exist"]);
    }
    // Nothing was created on the way.
    let r = s3::http(s3::shared().addr(), "GET", "/no-such-bucket-e2e", b"").unwrap();
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn the_secret_access_key_never_appears_in_output() {
    const SECRET: &str = "e2eSecretKey/zq7+Xw3vR9tLmN0pQ4sU8yB2cD6fH1jK";
    let k = keys();
    let bucket = s3::fresh_bucket("secret");
    let repo = format!("s3://{bucket}/r");
    let src = k.tmp.path().join("src");
    write_file(&src.join("f"), &random_bytes(5, 200_000));
    let target = k.tmp.path().join("t");
    let wk = k.tmp.path().join("wk");
    let id = s(&k.identity);
    let secret = [("AWS_SECRET_ACCESS_KEY", OsStr::new(SECRET))];
    let good = s3::shared().env();
    let closed = s3::env_for(&format!("http://127.0.0.1:{}", s3::free_port()));
    // Each run: `-vv -r REPO` and the rest, in an environment.
    let runs: Vec<(&str, Vec<&str>, &Env)> = vec![
        (&repo, vec!["init", "--recipient", &k.recipient], &good),
        (
            &repo,
            vec!["-i", id, "key", "write-key", "-o", s(&wk)],
            &good,
        ),
        (&repo, vec!["-k", s(&wk), "backup", s(&src)], &good),
        (&repo, vec!["--json", "-i", id, "snapshots"], &good),
        (
            &repo,
            vec!["-i", id, "restore", "latest", "--target", s(&target)],
            &good,
        ),
        (
            "s3://no-such-bucket-e2e/x",
            vec!["-i", id, "snapshots"],
            &good,
        ),
        (&repo, vec!["-i", id, "snapshots"], &closed),
    ];
    let mut failures = 0;
    for (repo, rest, env) in runs {
        let mut args = vec!["-vv", "-r", repo];
        args.extend(rest);
        let out = run(&args, env, &secret);
        failures += usize::from(out.code != 0);
        for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(!text.contains(SECRET), "the secret key is in {what}\n{out}");
            assert!(
                !text.contains("e2eSecretKey"),
                "part of the secret is in {what}\n{out}"
            );
        }
    }
    assert_eq!(
        failures, 2,
        "the two failing runs should fail, the others succeed"
    );
    assert_trees_equal(&src, &Fixture::restored(&target, &src));
    // Trace logging too.
    let out = run(
        &["-r", &repo, "-i", id, "snapshots"],
        &good,
        &[
            ("AWS_SECRET_ACCESS_KEY", OsStr::new(SECRET)),
            ("CAIRN_LOG", OsStr::new("trace")),
        ],
    );
    out.ok();
    assert!(!out.stderr.contains("e2eSecretKey"), "{out}");
}
