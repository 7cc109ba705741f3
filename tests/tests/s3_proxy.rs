//! S3 through an HTTP proxy, a real one ([`Tinyproxy`]) in front of moto: the variables the
//! AWS tools read (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, either case) and
//! object_store's `AWS_PROXY_URL`/`AWS_PROXY_EXCLUDES`; a proxy that is down or refuses the
//! credentials, named in the error without its credentials; an https endpoint through a
//! `CONNECT` tunnel.

use cairn_e2e::s3::{self, TlsFront};
use cairn_e2e::tinyproxy::{Config, Tinyproxy};
use cairn_e2e::*;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A proxy password distinctive enough to be searched for in output.
const PASSWORD: &str = "pr0xy-Pa55w0rd";
/// `cairn:PASSWORD` in base64, as a `Proxy-Authorization` header carries it.
const BASIC: &str = "Y2Fpcm46cHIweHktUGE1NXcwcmQ=";

/// A scratch directory with an identity and a small source tree, and a fresh bucket.
struct Setup {
    tmp: Scratch,
    identity: PathBuf,
    recipient: String,
    src: PathBuf,
    bucket: String,
}

fn setup(label: &str) -> Setup {
    let tmp = scratch();
    let identity = tmp.path().join("id.txt");
    let out = cairn(&["key", "generate", "-o", s(&identity)], &[]);
    out.ok();
    let src = tmp.path().join("src");
    write_file(&src.join("a"), &random_bytes(1, 200_000));
    write_file(&src.join("dir/b"), &text_bytes(2, 50_000));
    Setup {
        recipient: out.stdout.trim().to_string(),
        identity,
        src,
        bucket: s3::fresh_bucket(label),
        tmp,
    }
}

impl Setup {
    /// Run cairn on repository `s3://<bucket>/<name>` with the identity, `-vvv` (so that every
    /// log is searched for credentials too), in `env`. Panics if the proxy password is printed.
    fn run(&self, name: &str, args: &[&str], env: &Env) -> Output {
        let repo = format!("s3://{}/{name}", self.bucket);
        let mut all = vec!["-vvv", "-r", &repo, "-i", s(&self.identity)];
        all.extend_from_slice(args);
        let out = cairn(&all, &env_refs(env));
        for secret in [PASSWORD, BASIC] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "the proxy password was printed\n{out}"
            );
        }
        out
    }

    /// Run a command that must succeed without any request stalling on the way (tinyproxy
    /// closes a connection after each answer without saying so: one reused meanwhile stalls).
    fn run_ok(&self, name: &str, args: &[&str], env: &Env) {
        let out = self.run(name, args, env);
        out.ok();
        assert!(
            !out.stderr.contains("no bytes moved"),
            "a request stalled\n{out}"
        );
    }

    /// init, backup and a byte-exact restore of repository `name`; after each command, the
    /// number of requests `proxy` had received.
    fn round_trip(&self, name: &str, env: &Env, proxy: &Tinyproxy) -> [usize; 3] {
        self.run_ok(name, &["init", "--recipient", &self.recipient], env);
        let after_init = proxy.requests().len();
        self.run_ok(name, &["backup", s(&self.src)], env);
        let after_backup = proxy.requests().len();
        let target = self.tmp.path().join(format!("restored-{name}"));
        self.run_ok(name, &["restore", "latest", "--target", s(&target)], env);
        assert_trees_equal(&self.src, &Fixture::restored(&target, &self.src));
        [after_init, after_backup, proxy.requests().len()]
    }
}

/// The harness's environment for the shared moto server, without its `NO_PROXY`, plus `vars`.
fn env_with(vars: &[(&str, &str)]) -> Env {
    let mut e: Env = s3::shared()
        .env()
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("no_proxy"))
        .collect();
    e.extend(vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))));
    e
}

/// The error message of a `--json` run (the last line of its stderr, after the logs).
fn json_error(out: &Output) -> String {
    let last = out.stderr.trim().lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("stderr does not end in a JSON object ({e})\n{out}"));
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message\n{out}"))
        .to_string()
}

#[test]
fn each_proxy_variable_carries_every_command_through_the_proxy() {
    let t = setup("via");
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "AWS_PROXY_URL"] {
        let proxy = Tinyproxy::start();
        let env = env_with(&[(var, &proxy.url())]);
        let [init, backup, restore] = t.round_trip(var, &env, &proxy);
        assert!(
            0 < init && init < backup && backup < restore,
            "{var}: requests through the proxy after init, backup, restore: {init}, {backup}, {restore}\n{}",
            proxy.log()
        );
        let bucket = format!("{}/{}", s3::shared().endpoint(), t.bucket);
        for r in proxy.requests() {
            let target = r.split(' ').nth(1).unwrap_or_default();
            assert!(
                target
                    .strip_prefix(&bucket)
                    .is_some_and(|rest| rest.starts_with(['/', '?'])),
                "{var}: a request elsewhere: {r}"
            );
        }
    }
}

#[test]
fn no_proxy_and_proxy_excludes_naming_the_endpoint_bypass_the_proxy() {
    let t = setup("bypass");
    let proxy = Tinyproxy::start();
    let url = proxy.url();
    for (name, vars) in [
        (
            "upper",
            [("HTTP_PROXY", url.as_str()), ("NO_PROXY", "127.0.0.1")],
        ),
        (
            "lower",
            [
                ("http_proxy", url.as_str()),
                ("no_proxy", "example.com, 127.0.0.0/8"),
            ],
        ),
        (
            "excludes",
            [
                ("AWS_PROXY_URL", url.as_str()),
                ("AWS_PROXY_EXCLUDES", "127.0.0.1"),
            ],
        ),
    ] {
        t.round_trip(name, &env_with(&vars), &proxy);
        assert_eq!(proxy.requests(), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn a_proxy_that_is_down_is_named_without_its_credentials_with_what_to_check() {
    let t = setup("down");
    let closed = s3::free_port();
    let proxy = format!("http://127.0.0.1:{closed}");
    let with_password = format!("http://cairn:{PASSWORD}@127.0.0.1:{closed}");
    let retries = [("CAIRN_S3_RETRIES", "1")];
    for (var, also) in [
        ("HTTP_PROXY", "NO_PROXY"),
        ("AWS_PROXY_URL", "AWS_PROXY_EXCLUDES"),
    ] {
        let env = env_with(&[retries[0], (var, &with_password)]);
        let started = Instant::now();
        let text = t.run("r", &["init", "--recipient", &t.recipient], &env);
        let json = t.run("r", &["--json", "snapshots"], &env);
        let took = started.elapsed();
        let wanted = [
            format!("the proxy {proxy}"),
            var.to_string(),
            also.to_string(),
        ];
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        text.code_is(1).stderr_has(&wanted);
        json.code_is(1);
        let message = json_error(&json);
        for w in &wanted {
            assert!(message.contains(w), "{w:?} missing from {message:?}");
        }
        assert!(
            took < Duration::from_secs(20),
            "{var}: two commands against a closed proxy took {took:?}"
        );
    }
}

#[test]
fn proxy_credentials_in_the_url_work_and_refused_ones_are_named() {
    let t = setup("auth");
    let proxy = Tinyproxy::with(Config {
        basic_auth: Some(("cairn".into(), PASSWORD.into())),
        ..Config::default()
    });
    let good = env_with(&[("HTTP_PROXY", &proxy.url_with("cairn", PASSWORD))]);
    let [init, ..] = t.round_trip("r", &good, &proxy);
    assert!(init > 0, "{}", proxy.log());
    // Without credentials tinyproxy answers 407; with wrong ones, 401.
    for (url, status) in [
        (proxy.url(), "407"),
        (proxy.url_with("cairn", "wrong-Pa55w0rd"), "401"),
    ] {
        let env = env_with(&[("HTTP_PROXY", &url)]);
        let started = Instant::now();
        let out = t.run("r", &["snapshots"], &env);
        out.code_is(1).stderr_has(&[
            &format!(
                "the proxy {} refused the credentials ({status}",
                proxy.url()
            ),
            "HTTP_PROXY",
        ]);
        assert!(!out.stderr.contains("wrong-Pa55w0rd"), "{out}");
        // Not retried: an answer, not an outage.
        assert!(started.elapsed() < Duration::from_secs(5), "{out}");
    }
}

#[test]
fn an_https_endpoint_is_reached_through_a_connect_tunnel() {
    let t = setup("tunnel");
    let certs = etcd::Certs::generate();
    let front = TlsFront::start(&certs);
    let proxy = Tinyproxy::with(Config {
        basic_auth: Some(("cairn".into(), PASSWORD.into())),
        connect_ports: vec![front.port()],
    });
    let endpoint = front.endpoint();
    let ca = s(&certs.ca.cert);
    let https = |proxy_url: &str| {
        env_with(&[
            ("CAIRN_S3_ENDPOINT", &endpoint),
            ("AWS_CA_BUNDLE", ca),
            ("HTTPS_PROXY", proxy_url),
        ])
    };
    let [init, ..] = t.round_trip("r", &https(&proxy.url_with("cairn", PASSWORD)), &proxy);
    assert!(init > 0, "{}", proxy.log());
    let tunnel = format!("CONNECT 127.0.0.1:{} ", front.port());
    for r in proxy.requests() {
        assert!(r.starts_with(&tunnel), "not a tunnel to the endpoint: {r}");
    }
    // A tunnel refused for want of credentials.
    t.run("r", &["snapshots"], &https(&proxy.url()))
        .code_is(1)
        .stderr_has(&[
            &format!("the proxy {} refused the credentials (407", proxy.url()),
            "HTTPS_PROXY",
        ]);
    // A tunnel to a port the proxy does not allow (tinyproxy answers 403).
    let only_443 = Tinyproxy::with(Config {
        connect_ports: vec![443],
        ..Config::default()
    });
    let mut env = https(&only_443.url());
    env.push(("CAIRN_S3_RETRIES".into(), "0".into()));
    t.run("r", &["snapshots"], &env).code_is(1).stderr_has(&[
        &format!("the proxy {} did not open a tunnel", only_443.url()),
        "HTTPS_PROXY",
        "NO_PROXY",
    ]);
}
