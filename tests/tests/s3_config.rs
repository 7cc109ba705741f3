//! S3 settings as the AWS tools read them, through the real binary against moto: the
//! standard variables alone (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_ALLOW_HTTP`,
//! `AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_PROFILE`, the shared files), their precedence under
//! cairn's flags, and usage errors for unusable endpoints and repository locations. Which
//! credentials and region signed the requests is read off the signatures by a [`FaultProxy`].

use cairn_e2e::s3::{self, FaultProxy, TlsFront};
use cairn_e2e::*;
use std::ffi::OsString;
use std::path::Path;

/// A secret access key distinctive enough to be searched for in output.
const SECRET: &str = "SeCrEt/9f8e7d6c5b4a";

/// Variables the harness's S3 environment sets that would mask what these tests exercise.
const MASKING: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "CAIRN_S3_ENDPOINT",
];

/// The harness's S3 environment without credentials, region or endpoint, with `HOME` at
/// `home` (so no shared file of the machine is read) and the identity [`setup`] wrote there,
/// plus `vars`.
fn env(home: &Path, vars: &[(&str, &str)]) -> Env {
    let mut e: Env = s3::env_for("unused")
        .into_iter()
        .filter(|(k, _)| !MASKING.contains(&k.as_str()))
        .collect();
    e.push(("HOME".into(), home.into()));
    e.push(("CAIRN_IDENTITY".into(), home.join("id.txt").into()));
    e.extend(vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))));
    e
}

/// Run cairn with `args` and `env`.
fn run(args: &[&str], env: &Env) -> Output {
    cairn(args, &env_refs(env))
}

/// A scratch home with an identity's recipient, and a fresh bucket on the shared server.
struct Setup {
    home: Scratch,
    recipient: String,
    bucket: String,
}

fn setup(label: &str) -> Setup {
    let home = scratch();
    let id = home.path().join("id.txt");
    let out = cairn(&["key", "generate", "-o", s(&id)], &[]);
    out.ok();
    Setup {
        recipient: out.stdout.trim().to_string(),
        home,
        bucket: s3::fresh_bucket(label),
    }
}

impl Setup {
    /// `s3://BUCKET/name`.
    fn repo(&self, name: &str) -> String {
        format!("s3://{}/{name}", self.bucket)
    }

    /// `init` of `s3://BUCKET/name`.
    fn init(&self, name: &str, env: &Env) -> Output {
        run(
            &[
                "-r",
                &self.repo(name),
                "init",
                "--recipient",
                &self.recipient,
            ],
            env,
        )
    }

    /// True if the repository `name` has its config object on the server.
    fn created(&self, name: &str) -> bool {
        s3::shared()
            .get(&self.bucket, &format!("{name}/config"))
            .is_some()
    }

    /// Write `~/.aws/NAME`.
    fn aws_file(&self, name: &str, text: &str) {
        write_file(&self.home.path().join(".aws").join(name), text.as_bytes());
    }
}

/// An http endpoint where nothing listens.
fn dead_endpoint() -> String {
    format!("http://127.0.0.1:{}", s3::free_port())
}

fn static_creds() -> [(&'static str, &'static str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", "envkey"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ]
}

#[test]
fn aws_endpoint_url_works_alone_with_or_without_aws_allow_http() {
    let t = setup("endpoint-url");
    let moto = s3::shared().endpoint();
    let [k, sk] = static_creds();
    let allow = env(
        t.home.path(),
        &[
            k,
            sk,
            ("AWS_ENDPOINT_URL", &moto),
            ("AWS_ALLOW_HTTP", "true"),
        ],
    );
    t.init("a", &allow).ok();
    assert!(t.created("a"));
    // The user named the http:// endpoint: no AWS_ALLOW_HTTP needed.
    let named = env(t.home.path(), &[k, sk, ("AWS_ENDPOINT_URL", &moto)]);
    t.init("b", &named).ok();
    assert!(t.created("b"));
    // AWS_ALLOW_HTTP=false forbids it, before any request.
    let forbid = env(
        t.home.path(),
        &[
            k,
            sk,
            ("AWS_ENDPOINT_URL", &moto),
            ("AWS_ALLOW_HTTP", "false"),
        ],
    );
    t.init("c", &forbid)
        .code_is(2)
        .stderr_has(&["AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP=false"]);
    assert!(!t.created("c"));
}

#[test]
fn endpoint_precedence_is_flag_then_endpoint_url_s3_then_endpoint_url() {
    let t = setup("endpoint-order");
    let moto = s3::shared().endpoint();
    let dead = dead_endpoint();
    let [k, sk] = static_creds();
    let s3_over_global = env(
        t.home.path(),
        &[
            k,
            sk,
            ("AWS_ENDPOINT_URL", &dead),
            ("AWS_ENDPOINT_URL_S3", &moto),
        ],
    );
    t.init("a", &s3_over_global).ok();
    let all_dead = env(
        t.home.path(),
        &[
            k,
            sk,
            ("AWS_ENDPOINT_URL", &dead),
            ("AWS_ENDPOINT_URL_S3", &dead),
        ],
    );
    run(
        &["-r", &t.repo("a"), "--s3-endpoint", &moto, "snapshots"],
        &all_dead,
    )
    .ok();
    let mut by_env = all_dead.clone();
    by_env.push(("CAIRN_S3_ENDPOINT".into(), moto.clone().into()));
    run(&["-r", &t.repo("a"), "snapshots"], &by_env).ok();
}

#[test]
fn profile_region_endpoint_and_credentials_follow_the_aws_precedence() {
    let t = setup("profile");
    let proxy = FaultProxy::start(s3::shared().addr());
    t.aws_file(
        "config",
        &format!(
            "[default]\nregion = ap-south-1\n\n[profile ops]\nregion = eu-west-2\nendpoint_url = {}\naws_access_key_id = cfgkey\naws_secret_access_key = {SECRET}\n",
            proxy.endpoint()
        ),
    );
    let ops = [("AWS_PROFILE", "ops")];
    let signers = |extra: &[(&str, &str)], args: &[&str]| {
        let mut vars = ops.to_vec();
        vars.extend_from_slice(extra);
        let repo = t.repo("r");
        let mut a = vec!["-r", repo.as_str()];
        a.extend_from_slice(args);
        run(&a, &env(t.home.path(), &vars)).ok();
        proxy.take_signers()
    };
    // Endpoint, region and credentials all from the config file's profile.
    assert_eq!(
        signers(&[], &["init", "--recipient", &t.recipient]),
        ["cfgkey/eu-west-2"]
    );
    assert!(t.created("r"));
    // The credentials file wins over the config file.
    t.aws_file(
        "credentials",
        &format!("[ops]\naws_access_key_id = filekey\naws_secret_access_key = {SECRET}\n"),
    );
    assert_eq!(signers(&[], &["snapshots"]), ["filekey/eu-west-2"]);
    // The environment wins over both; regions: AWS_DEFAULT_REGION < AWS_REGION < --s3-region.
    let [k, sk] = static_creds();
    assert_eq!(signers(&[k, sk], &["snapshots"]), ["envkey/eu-west-2"]);
    let default_region = ("AWS_DEFAULT_REGION", "us-west-1");
    assert_eq!(
        signers(&[default_region], &["snapshots"]),
        ["filekey/us-west-1"]
    );
    let region = ("AWS_REGION", "ca-central-1");
    assert_eq!(
        signers(&[default_region, region], &["snapshots"]),
        ["filekey/ca-central-1"]
    );
    assert_eq!(
        signers(&[region], &["--s3-region", "sa-east-1", "snapshots"]),
        ["filekey/sa-east-1"]
    );
    // A profile that does not exist is named, not silently replaced by the default one.
    let missing = env(t.home.path(), &[("AWS_PROFILE", "nope")]);
    run(&["-r", &t.repo("r"), "snapshots"], &missing)
        .code_is(2)
        .stderr_has(&["AWS_PROFILE=nope", "names no profile"]);
}

#[test]
fn a_profiles_credential_process_signs_and_unsupported_sources_are_named() {
    use std::os::unix::fs::PermissionsExt;
    let t = setup("cred-process");
    let proxy = FaultProxy::start(s3::shared().addr());
    let runs = t.home.path().join("runs");
    let helper = t.home.path().join("creds.sh");
    let later = "2099-01-01T00:00:00Z";
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\necho run >> '{}'\n[ \"$1\" = --ok ] || {{ echo 'sign-in expired' >&2; exit 2; }}\n\
             echo '{{\"Version\": 1, \"AccessKeyId\": \"prockey\", \"SecretAccessKey\": \"{SECRET}\", \"SessionToken\": \"tok\", \"Expiration\": \"{later}\"}}'\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    t.aws_file(
        "config",
        &format!(
            "[profile proc]\nregion = eu-west-2\nendpoint_url = {ep}\ncredential_process = {h} --ok\n\n\
             [profile broken]\nendpoint_url = {ep}\ncredential_process = {h} --fail\n\n\
             [profile role]\nendpoint_url = {ep}\nrole_arn = arn:aws:iam::123456789012:role/backup\nsource_profile = proc\n",
            ep = proxy.endpoint(),
            h = helper.display()
        ),
    );
    let runs_so_far = || std::fs::read_to_string(&runs).map_or(0, |r| r.lines().count());
    let proc = env(t.home.path(), &[("AWS_PROFILE", "proc")]);
    run(
        &["-r", &t.repo("r"), "init", "--recipient", &t.recipient],
        &proc,
    )
    .ok();
    assert!(t.created("r"));
    assert_eq!(proxy.take_signers(), ["prockey/eu-west-2"]);
    // Held for the process's requests: one run per command.
    assert_eq!(runs_so_far(), 1);
    run(&["-r", &t.repo("r"), "snapshots"], &proc).ok();
    assert_eq!(runs_so_far(), 2);
    // A command that fails: its message, the profile and the program; no secret.
    let broken = env(t.home.path(), &[("AWS_PROFILE", "broken")]);
    let out = run(&["-r", &t.repo("r"), "snapshots"], &broken);
    out.code_is(1)
        .stderr_has(&["profile broken", "creds.sh", "sign-in expired"]);
    assert!(
        !out.stderr.contains(SECRET) && !out.stderr.contains("--fail"),
        "{out}"
    );
    // A profile that assumes a role: named, with the way through the AWS CLI, before any
    // request (not a fall to instance metadata).
    let role = env(t.home.path(), &[("AWS_PROFILE", "role")]);
    run(&["-r", &t.repo("r"), "snapshots"], &role)
        .code_is(2)
        .stderr_has(&["profile role", "role_arn", "export-credentials"]);
    assert!(proxy
        .take_signers()
        .iter()
        .all(|s| s.starts_with("prockey")));
}

#[test]
fn aws_max_attempts_and_the_profiles_max_attempts_set_the_retries() {
    let t = setup("attempts");
    let dead = dead_endpoint();
    let [k, sk] = static_creds();
    t.aws_file("config", "[default]\nmax_attempts = 3\n");
    // Without the harness's CAIRN_S3_RETRIES; each retry is said on stderr as it happens.
    let tries = |vars: &[(&str, &str)]| {
        let mut e: Env = env(t.home.path(), &[k, sk, ("AWS_ENDPOINT_URL", dead.as_str())])
            .into_iter()
            .filter(|(name, _)| name != "CAIRN_S3_RETRIES")
            .collect();
        e.extend(vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))));
        let out = run(&["-r", &t.repo("r"), "snapshots"], &e);
        out.code_is(1);
        out.stderr.matches("backing off").count()
    };
    assert_eq!(tries(&[]), 2, "the profile's max_attempts = 3");
    assert_eq!(tries(&[("AWS_MAX_ATTEMPTS", "2")]), 1);
    assert_eq!(tries(&[("AWS_MAX_ATTEMPTS", "1")]), 0);
    assert_eq!(
        tries(&[("AWS_MAX_ATTEMPTS", "1"), ("CAIRN_S3_RETRIES", "1")]),
        1
    );
    let e = env(t.home.path(), &[k, sk, ("AWS_MAX_ATTEMPTS", "lots")]);
    run(&["-r", &t.repo("r"), "snapshots"], &e)
        .code_is(2)
        .stderr_has(&["aws_max_attempts", "whole number"]);
}

#[test]
fn services_section_endpoint_of_the_default_profile_is_used() {
    let t = setup("services");
    let proxy = FaultProxy::start(s3::shared().addr());
    t.aws_file(
        "config",
        &format!(
            "[default]\nservices = local\n\n[services local]\ndynamodb =\n  endpoint_url = http://127.0.0.1:1\ns3 =\n  endpoint_url = {}\n",
            proxy.endpoint()
        ),
    );
    // Files elsewhere than ~/.aws, named by the variables.
    let dir = t.home.path().join("elsewhere");
    std::fs::create_dir(&dir).unwrap();
    let config = dir.join("cfg");
    std::fs::rename(t.home.path().join(".aws/config"), &config).unwrap();
    let creds = dir.join("creds");
    write_file(
        &creds,
        format!("[default]\naws_access_key_id = filekey\naws_secret_access_key = {SECRET}\n")
            .as_bytes(),
    );
    let e = env(
        t.home.path(),
        &[
            ("AWS_CONFIG_FILE", s(&config)),
            ("AWS_SHARED_CREDENTIALS_FILE", s(&creds)),
        ],
    );
    t.init("r", &e).ok();
    assert!(t.created("r"));
    assert_eq!(proxy.take_signers(), ["filekey/us-east-1"]);
}

#[test]
fn endpoints_without_a_scheme_are_usage_errors_that_show_no_secret() {
    let t = setup("no-scheme");
    let [k, sk] = static_creds();
    let plain = env(t.home.path(), &[k, sk]);
    let out = run(
        &[
            "-r",
            &t.repo("r"),
            "--s3-endpoint",
            "127.0.0.1:9000",
            "snapshots",
        ],
        &plain,
    );
    out.code_is(2).stderr_has(&[
        "--s3-endpoint 127.0.0.1:9000 has no scheme",
        "http://127.0.0.1:9000",
        "https://127.0.0.1:9000",
    ]);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    let by_var = env(t.home.path(), &[k, sk, ("AWS_ENDPOINT_URL", "minio:9000")]);
    let out = run(&["-r", &t.repo("r"), "snapshots"], &by_var);
    out.code_is(2)
        .stderr_has(&["AWS_ENDPOINT_URL minio:9000 has no scheme"]);
    // Incomplete credentials are named, the secret is not printed.
    let half = env(t.home.path(), &[sk, ("AWS_ENDPOINT_URL_S3", "http://x")]);
    t.aws_file("credentials", "[default]\naws_access_key_id = filekey\n");
    for out in [out, run(&["-r", &t.repo("r"), "snapshots"], &half)] {
        out.failed();
        assert!(!out.stderr.contains(SECRET), "{out}");
    }
    run(&["-r", &t.repo("r"), "snapshots"], &half)
        .code_is(2)
        .stderr_has(&["no secret access key"]);
}

#[test]
fn unknown_and_restic_locations_are_refused_and_create_nothing() {
    let t = setup("locations");
    let cwd = t.home.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let e = env(t.home.path(), &[]);
    let init = |repo: &str| {
        cairn_in(
            &cwd,
            &["-r", repo, "init", "--recipient", &t.recipient],
            &env_refs(&e),
        )
    };
    init("s3:127.0.0.1:9000/bkt/cluster1")
        .code_is(2)
        .stderr_has(&[
            "restic",
            "--repo s3://bkt/cluster1 --s3-endpoint https://127.0.0.1:9000",
        ]);
    init("s3:http://minio:9000/bkt")
        .code_is(2)
        .stderr_has(&["--repo s3://bkt --s3-endpoint http://minio:9000"]);
    init("foo://x").code_is(2).stderr_has(&["foo://"]);
    init("a:b").code_is(2).stderr_has(&["./a:b"]);
    init("sftp:host:/srv/repo").code_is(2);
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "a refused location created something"
    );
    // Paths with a colon still work, written as paths.
    init("./a:b").ok();
    assert!(cwd.join("a:b/config").is_file());
    let abs = cwd.join("x:y");
    init(s(&abs)).ok();
    assert!(abs.join("config").is_file());
}

#[test]
fn aws_ca_bundle_and_a_profiles_ca_bundle_trust_a_private_ca() {
    let certs = cairn_e2e::etcd::Certs::generate();
    let front = TlsFront::start(&certs);
    let t = setup("ca-bundle");
    let https = front.endpoint();
    let [k, sk] = static_creds();
    let ca = s(&certs.ca.cert);
    // The system does not know the test CA.
    let plain = env(t.home.path(), &[k, sk, ("AWS_ENDPOINT_URL_S3", &https)]);
    let out = t.init("untrusted", &plain);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.to_lowercase().contains("certificate"), "{out}");
    assert!(!t.created("untrusted"));
    // AWS_CA_BUNDLE: trusted; a backup and its listing work.
    let bundle = env(
        t.home.path(),
        &[
            k,
            sk,
            ("AWS_ENDPOINT_URL_S3", &https),
            ("AWS_CA_BUNDLE", ca),
        ],
    );
    t.init("a", &bundle).ok();
    assert!(t.created("a"));
    let src = t.home.path().join("src");
    write_file(&src.join("f"), &random_bytes(7, 300_000));
    run(&["-r", &t.repo("a"), "backup", s(&src)], &bundle).ok();
    let listed = run(&["-r", &t.repo("a"), "--json", "snapshots"], &bundle);
    listed.ok();
    assert_eq!(listed.json().as_array().map(Vec::len), Some(1), "{listed}");
    // The profile's ca_bundle, as the AWS tools read it.
    t.aws_file("config", &format!("[default]\nca_bundle = {ca}\n"));
    let profile = env(t.home.path(), &[k, sk, ("AWS_ENDPOINT_URL_S3", &https)]);
    run(&["-r", &t.repo("a"), "snapshots"], &profile).ok();
    // A bundle that cannot be used is named, with what named it, before any request.
    let missing = env(
        t.home.path(),
        &[
            k,
            sk,
            ("AWS_ENDPOINT_URL_S3", &https),
            ("AWS_CA_BUNDLE", "/nonexistent/ca.pem"),
        ],
    );
    run(&["-r", &t.repo("a"), "snapshots"], &missing)
        .code_is(2)
        .stderr_has(&["/nonexistent/ca.pem", "AWS_CA_BUNDLE"]);
}

#[test]
fn no_credentials_fail_at_once_and_a_tilde_in_the_file_variables_is_home() {
    let t = setup("nocreds");
    let s3_endpoint = s3::shared().endpoint();
    let endpoint = [("AWS_ENDPOINT_URL", s3_endpoint.as_str())];
    // Instance metadata that accepts connections and never answers (an ordinary network off
    // EC2): one attempt of a second, then "no credentials", not minutes of S3 retries.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imds = format!("http://{}", silent.local_addr().unwrap());
    let start = std::time::Instant::now();
    let mut vars = endpoint.to_vec();
    vars.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()));
    let out = run(
        &["-r", &t.repo("r"), "snapshots"],
        &env(t.home.path(), &vars),
    );
    out.code_is(2).stderr_has(&[
        "no AWS credentials found",
        "none for profile default",
        &format!("instance metadata at {imds} gave no credentials (no answer within 1 s)"),
        "AWS_ACCESS_KEY_ID",
    ]);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{out}"
    );
    // AWS_EC2_METADATA_DISABLED: not asked at all.
    vars.push(("AWS_EC2_METADATA_DISABLED", "true"));
    run(
        &["-r", &t.repo("r"), "snapshots"],
        &env(t.home.path(), &vars),
    )
    .code_is(2)
    .stderr_has(&["instance metadata is off (AWS_EC2_METADATA_DISABLED)"]);
    // `~/` in AWS_SHARED_CREDENTIALS_FILE is the home directory, as for the AWS CLI.
    t.aws_file(
        "creds-backup",
        &format!("[default]\naws_access_key_id = tildekey\naws_secret_access_key = {SECRET}\n"),
    );
    vars.push(("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/creds-backup"));
    let proxy = FaultProxy::start(s3::shared().addr());
    let repo = t.repo("r");
    let args = ["-r", repo.as_str(), "--s3-endpoint", &proxy.endpoint()];
    let mut init = args.to_vec();
    init.extend(["init", "--recipient", &t.recipient]);
    run(&init, &env(t.home.path(), &vars)).ok();
    assert_eq!(
        proxy.take_signers().first().map(|s| &s[..8]),
        Some("tildekey")
    );
}
