//! Configured jobs: `cairn config check`, `cairn run` (backup, retention, copies, audit, one
//! summary and exit code, metrics that pass promtool), `cairn jobs`, and the generated
//! deployment files (systemd units checked with systemd-analyze, a CronJob parsed back with the
//! Kubernetes types). Real repositories, a real etcd and moto's S3 server; nothing is mocked.

use cairn_e2e::etcd::{self, Etcd};
use cairn_e2e::jobs::*;
use cairn_e2e::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

fn run_job(fx: &Fixture, config: &Path, args: &[&str], env: &Env) -> Output {
    let mut a = vec!["run", "--config", s(config)];
    a.extend_from_slice(args);
    fx.run_env(&a, &env_refs(env))
}

#[test]
fn config_check_names_line_and_column() {
    let fx = Fixture::new();
    let good = format!(
        "{}\n[jobs.files]\nrepository = \"main\"\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Paris\"\nsource = {{ kind = \"paths\", paths = [\"/etc/hostname\"] }}\n\n[presets.master]\nanything = \"kept for backup host\"\n",
        repository_table("main", s(&fx.repo), &fx.identity, None)
    );
    let cfg = write_config(&fx, "good.toml", &good);
    let out = fx.run(&["config", "check", "--config", s(&cfg)]);
    out.ok();
    assert!(
        out.stdout.contains("valid: 1 repository, 1 job (files)"),
        "{out}"
    );

    // A typo in a key, a bad zone, an unknown repository: each at its line and column.
    let cases = [
        (
            good.replace("timezone =", "timezon ="),
            "bad.toml:8:1",
            "timezon",
        ),
        (
            good.replace("Europe/Paris", "Europe/Pariss"),
            "bad.toml:8:12",
            "IANA",
        ),
        (
            good.replace("repository = \"main\"", "repository = \"mian\""),
            "bad.toml:6:14",
            "mian",
        ),
        (
            good.replace("0 3 * * *", "0 3 * *"),
            "bad.toml:7:12",
            "4 fields",
        ),
        // What would only fail at run time: relative paths (resolved against the run's
        // working directory, `/` under systemd), a host source naming nothing or an unknown
        // preset.
        (
            good.replace("/etc/hostname", "etc/hostname"),
            "bad.toml:",
            "path etc/hostname is a relative path",
        ),
        (
            format!("state_dir = \"state\"\n{good}"),
            "bad.toml:1:1",
            "state_dir state is a relative path",
        ),
        (
            good.replace(
                "kind = \"paths\", paths = [\"/etc/hostname\"]",
                "kind = \"host\"",
            ),
            "bad.toml:",
            "a host source needs `presets",
        ),
        (
            good.replace(
                "kind = \"paths\", paths = [\"/etc/hostname\"]",
                "kind = \"host\", presets = [\"auto\", \"ocp5-master\"]",
            )
            .replace(
                "[presets.master]\nanything = \"kept for backup host\"\n",
                "",
            ),
            "bad.toml:",
            "no preset named \"ocp5-master\"",
        ),
    ];
    for (text, at, what) in cases {
        let cfg = write_config(&fx, "bad.toml", &text);
        let out = fx.run(&["config", "check", "--config", s(&cfg)]);
        out.code_is(2);
        assert!(
            out.stderr.contains(at) && out.stderr.contains(what),
            "want {at} {what}: {out}"
        );
    }
    // CAIRN_CONFIG names the file too; a missing file says how to give one.
    let out = fx.run_env(
        &["config", "check"],
        &[("CAIRN_CONFIG", fx.path("none.toml").as_os_str())],
    );
    out.code_is(2);
    assert!(
        out.stderr.contains("none.toml") && out.stderr.contains("--config"),
        "{out}"
    );
}

/// A paths job on a local repository with a copy to S3 and a rotating audit: retention holds
/// exactly max_count, the copy gets every snapshot, the audit rotates through 1/3, 2/3, 3/3,
/// and the metrics file passes promtool.
#[test]
fn run_paths_job_with_retention_copy_and_audit() {
    let fx = Fixture::new();
    let data = fx.dir("data");
    let s3 = s3::shared();
    let off = Backend::S3.fresh(fx.path("x").as_path(), "off");
    let s3env = s3.env();
    fx.run_env(
        &[
            "-r",
            &off.location(),
            "-i",
            s(&fx.identity),
            "init",
            "--like",
            s(&fx.repo),
        ],
        &env_refs(&s3env),
    )
    .ok();
    let state = fx.path("state");
    let config = format!(
        "state_dir = \"{}\"\n{}{}\n[jobs.files]\nrepository = \"main\"\ncopy_to = [\"off\"]\ntags = [\"daily\"]\nhost = \"master-0\"\nsource = {{ kind = \"paths\", paths = [\"{}\"] }}\nretention = {{ max_count = 3 }}\naudit = {{ read_data_subset = \"1/3\" }}\n",
        s(&state),
        repository_table("main", s(&fx.repo), &fx.identity, None),
        repository_table("off", &off.location(), &fx.identity, Some(&s3.endpoint())),
        s(&data)
    );
    let cfg = write_config(&fx, "cairn.toml", &config);
    let prom = fx.path("metrics/cairn.prom");
    fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let mut seen = BTreeSet::new();
    for run in 1..=5u64 {
        fs::write(data.join(format!("f{run}")), random_bytes(run, 300_000)).unwrap();
        let out = run_job(
            &fx,
            &cfg,
            &["files", "--json", "--metrics-file", s(&prom)],
            &s3env,
        );
        out.ok();
        let j = out.json();
        let summary = &j["jobs"][0];
        assert_eq!(summary["status"], "ok", "{out}");
        let steps: Vec<&str> = summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["backup", "retention", "copy off", "audit"], "{out}");
        assert_eq!(
            summary["audit"]["subset"],
            format!("{}/3", (run - 1) % 3 + 1),
            "{out}"
        );
        seen.insert(summary["backup"]["snapshot"].as_str().unwrap().to_string());
        // Exactly min(run, 3): never N+1.
        let kept = job_snapshots(&fx, "files");
        assert_eq!(kept.len() as u64, run.min(3), "after run {run}: {kept:?}");
        assert_eq!(summary["repository"]["job_snapshots"], run.min(3));
        let text = fs::read_to_string(&prom).unwrap();
        if let Some(problems) = promtool(&text) {
            panic!("promtool: {problems}\n{text}");
        }
        assert_eq!(
            metric(&text, "cairn_job_last_exit_code{job=\"files\"}"),
            Some(0.0)
        );
        assert_eq!(
            metric(&text, "cairn_job_runs_total{job=\"files\",outcome=\"ok\"}"),
            Some(run as f64)
        );
        assert_eq!(
            metric(&text, "cairn_job_snapshots{job=\"files\"}"),
            Some(run.min(3) as f64)
        );
    }
    // The newest three are the ones kept; the copy holds all five (retention is per repository).
    let kept: BTreeSet<String> = job_snapshots(&fx, "files").into_iter().collect();
    assert_eq!(kept.len(), 3);
    assert!(kept.is_subset(&seen));
    let out = fx.run_env(
        &[
            "--json",
            "-r",
            &off.location(),
            "-i",
            s(&fx.identity),
            "snapshots",
            "--tag",
            "job:files",
            "--host",
            "master-0",
        ],
        &env_refs(&s3env),
    );
    out.ok();
    assert_eq!(out.json().as_array().unwrap().len(), 5, "{out}");
    // Every pack was read once over the three rotating audits; the repository is clean.
    fx.id(&["check", "--read-data"]).ok();

    // `cairn jobs` shows the last run; text output of `run` is one summary.
    let out = fx.run(&["jobs", "--config", s(&cfg)]);
    out.ok();
    assert!(
        out.stdout.contains("files") && out.stdout.contains("last run ok"),
        "{out}"
    );
    let out = run_job(&fx, &cfg, &["files"], &s3env);
    out.ok();
    assert!(out.stdout.starts_with("job files: ok (exit 0)"), "{out}");

    // While another process runs the job (holds its lock), a second run refuses at once.
    let lock = fs::File::open(state.join("files.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let before = job_snapshots(&fx, "files");
    let out = run_job(&fx, &cfg, &["files", "--json"], &s3env);
    out.code_is(1);
    assert!(out.stdout.contains("already running"), "{out}");
    assert_eq!(job_snapshots(&fx, "files"), before);
    drop(lock);
    run_job(&fx, &cfg, &["files"], &s3env).ok();
    // Under the generated service's UMask=0077 the metrics file is still readable by
    // node_exporter's user.
    let strict = fx.path("metrics/strict.prom");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 077 && exec \"$@\"", "sh", s(&cairn_bin())])
        .args([
            "run",
            "--config",
            s(&cfg),
            "files",
            "--metrics-file",
            s(&strict),
        ])
        .envs(fx.env())
        .envs(s3env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&strict).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "metrics file mode {mode:o}");
    // A metrics file that cannot be written fails the run, saying the results stand.
    let out = run_job(
        &fx,
        &cfg,
        &[
            "files",
            "--json",
            "--metrics-file",
            s(&fx.path("nowhere/cairn.prom")),
        ],
        &s3env,
    );
    out.code_is(1);
    let j = out.json();
    assert_eq!(j["jobs"][0]["status"], "ok", "{out}");
    assert!(
        j["metrics_error"]
            .as_str()
            .is_some_and(|e| e.contains("nowhere/cairn.prom") && e.contains("results above stand")),
        "{out}"
    );
}

/// Seed parity: the platform's retentionSize overshoots by up to 10 GB; a job's max_size holds
/// after every run, and keeps as many of the newest snapshots as fit.
#[test]
fn max_size_never_overshoots() {
    let fx = Fixture::new();
    let data = fx.dir("data");
    let limit: u64 = 2_000_000;
    let config = format!(
        "state_dir = \"{}\"\n{}\n[jobs.grow]\nrepository = \"main\"\nsource = {{ kind = \"paths\", paths = [\"{}\"] }}\nretention = {{ max_size = \"{limit}B\" }}\n",
        s(&fx.path("state")),
        repository_table("main", s(&fx.repo), &fx.identity, None),
        s(&data)
    );
    let cfg = write_config(&fx, "cairn.toml", &config);
    let mut max_kept = 0;
    for run in 1..=8u64 {
        // 400 kB of new, incompressible data per run: about four runs fit.
        fs::write(
            data.join(format!("f{run}")),
            random_bytes(100 + run, 400_000),
        )
        .unwrap();
        if run > 3 {
            let _ = fs::remove_file(data.join(format!("f{}", run - 3)));
        }
        let out = run_job(&fx, &cfg, &["grow", "--json"], &Env::new());
        out.ok();
        let bytes = fx.repo_bytes();
        assert!(
            bytes <= limit,
            "run {run}: {bytes} bytes stored, over max_size {limit}: {out}"
        );
        let kept = job_snapshots(&fx, "grow").len();
        assert!(kept >= 1);
        max_kept = max_kept.max(kept);
        let reported = out.json()["jobs"][0]["repository"]["size_bytes"]
            .as_u64()
            .unwrap();
        assert!(
            reported <= limit,
            "the summary reports {reported} bytes stored"
        );
    }
    assert!(max_kept >= 2, "max_size kept only {max_kept} snapshots");
}

/// An etcd job against a real etcd with TLS client certificates, and a failing job beside it:
/// `cairn run good bad` runs both, exits 1 for the failure, and the good job's snapshot is saved.
#[test]
fn run_etcd_job_and_a_failing_one() {
    if !etcd::available("run_etcd_job_and_a_failing_one") {
        return;
    }
    let e = Etcd::start();
    etcd::load_keyspace(&e, 200);
    let fx = Fixture::new();
    let c = &e.certs;
    let etcd_table = |endpoint: &str| {
        format!(
            "{{ kind = \"etcd\", endpoints = [\"{endpoint}\"], cacert = \"{}\", cert = \"{}\", key = \"{}\", timeout = 3 }}",
            s(&c.ca.cert),
            s(&c.client.cert),
            s(&c.client.key)
        )
    };
    let dead = format!("https://127.0.0.1:{}", etcd::free_port());
    let config = format!(
        "state_dir = \"{}\"\n{}\n[jobs.etcd]\nrepository = \"main\"\nschedule = \"0 2 * * *\"\ntimezone = \"America/New_York\"\nsource = {}\nretention = {{ max_count = 2 }}\naudit = {{}}\n\n[jobs.broken]\nrepository = \"main\"\nsource = {}\n",
        s(&fx.path("state")),
        repository_table("main", s(&fx.repo), &fx.identity, None),
        etcd_table(&e.endpoint()),
        etcd_table(&dead)
    );
    let cfg = write_config(&fx, "cairn.toml", &config);
    for run in 1..=3 {
        etcd::update_keys(&e, 200, 7, run);
        let out = run_job(&fx, &cfg, &["etcd", "--json"], &Env::new());
        out.ok();
        let sum = &out.json()["jobs"][0];
        assert_eq!(sum["backup"]["files"], 1, "{out}");
        assert_eq!(sum["audit"]["damaged_objects"], 0, "{out}");
    }
    assert_eq!(
        job_snapshots(&fx, "etcd").len(),
        2,
        "max_count 2 holds exactly"
    );
    let prom = fx.path("cairn.prom");
    let out = run_job(
        &fx,
        &cfg,
        &["broken", "etcd", "--json", "--metrics-file", s(&prom)],
        &Env::new(),
    );
    out.code_is(1);
    // A job that never succeeded reports its last success at 0, so "too old" fires for it.
    let text = fs::read_to_string(&prom).unwrap();
    assert_eq!(
        metric(
            &text,
            "cairn_job_last_success_timestamp_seconds{job=\"broken\"}"
        ),
        Some(0.0),
        "{text}"
    );
    let j = out.json();
    assert_eq!(j["jobs"][0]["status"], "failed", "{out}");
    assert!(
        j["jobs"][0]["steps"][0]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{out}"
    );
    assert_eq!(j["jobs"][1]["status"], "ok", "{out}");
    assert_eq!(job_snapshots(&fx, "etcd").len(), 2);
    // The restored database is the real thing.
    let latest = job_snapshots(&fx, "etcd").pop().unwrap();
    let target = fx.dir("restored");
    fx.restore(&latest, &target, &["--layout", "cluster-backup"])
        .ok();
    let db = fs::read_dir(&target)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "db"))
        .expect("snapshot_*.db");
    assert!(etcd::snapshot_status(&db).total_keys > 200);
}

/// `systemd-analyze calendar` elapse times in UTC for `expr` (TZ=UTC), `n` of them.
fn systemd_elapses(expr: &str, n: usize) -> Vec<String> {
    let out = Command::new("systemd-analyze")
        .env("TZ", "UTC")
        .args(["calendar", &format!("--iterations={n}"), expr])
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "systemd-analyze calendar {expr:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter(|l| l.contains("Next elapse:") || l.contains("Iter. #"))
        .map(|l| {
            let f: Vec<&str> = l
                .split(": ")
                .nth(1)
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            format!("{}T{}Z", f[1], f[2])
        })
        .collect()
}

#[test]
fn generated_systemd_units_verify_and_match_the_schedule() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("note: skipping: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let fx = Fixture::new();
    let schedules = [
        ("nightly", "30 2 * * *", "Europe/Paris"),
        ("weekdays", "0 4 * * 1-5", "America/New_York"),
        ("weekend", "0 2 * * FRI-SUN", "Europe/Paris"),
        ("sundays", "0 5 * * 7", "UTC"),
        ("bimonthly", "15 3 1 */2 *", "Asia/Tokyo"),
        ("often", "*/20 * * * * *", "UTC"),
    ];
    let mut config = format!(
        "state_dir = \"{}\"\n{}",
        s(&fx.path("state")),
        repository_table("main", s(&fx.repo), &fx.identity, None)
    );
    for (name, expr, tz) in schedules {
        config.push_str(&format!(
            "\n[jobs.{name}]\nrepository = \"main\"\nschedule = \"{expr}\"\ntimezone = \"{tz}\"\nrandom_delay = \"1m\"\nsource = {{ kind = \"paths\", paths = [\"/etc/hostname\"] }}\n"
        ));
    }
    let cfg = write_config(&fx, "cairn.toml", &config);
    let units = fx.dir("units");
    let jobs = fx.run(&["--json", "jobs", "--config", s(&cfg), "--count", "4"]);
    jobs.ok();
    let jobs = jobs.json();
    for (name, expr, tz) in schedules {
        fx.run(&[
            "generate",
            "systemd",
            name,
            "--config",
            s(&cfg),
            "--output",
            s(&units),
            "--bin",
            s(&cairn_bin()),
        ])
        .ok();
        let service = units.join(format!("cairn-{name}.service"));
        let timer = units.join(format!("cairn-{name}.timer"));
        let out = Command::new("systemd-analyze")
            .args(["verify", s(&service), s(&timer)])
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "systemd-analyze verify {name}: {said}"
        );
        assert!(
            !said.contains(&format!("cairn-{name}")),
            "systemd-analyze verify {name} complains: {said}"
        );
        let timer_text = fs::read_to_string(&timer).unwrap();
        let service_text = fs::read_to_string(&service).unwrap();
        for want in [
            "Persistent=true",
            "RandomizedDelaySec=60s",
            &format!("Unit=cairn-{name}.service"),
        ] {
            assert!(timer_text.contains(want), "{want}: {timer_text}");
        }
        for want in [
            "Type=oneshot",
            "ProtectSystem=strict",
            "PrivateTmp=true",
            "NoNewPrivileges=true",
            "CacheDirectory=cairn",
            "SuccessExitStatus=3",
            &format!("ReadWritePaths=-{}", s(&fx.repo)),
        ] {
            assert!(service_text.contains(want), "{want}: {service_text}");
        }
        let calendar = timer_text
            .lines()
            .find_map(|l| l.strip_prefix("OnCalendar="))
            .unwrap();
        assert!(calendar.ends_with(tz), "{calendar}");
        // systemd's next elapses are cairn's next runs.
        let cairn_next: Vec<String> = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == name)
            .unwrap()["next_utc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let systemd_next = systemd_elapses(calendar, 4);
        // cairn's list was taken a moment earlier: for a seconds schedule, align on the first common time.
        let start = systemd_next
            .iter()
            .position(|t| cairn_next.contains(t))
            .unwrap_or(0);
        let common: Vec<_> = systemd_next[start..]
            .iter()
            .zip(cairn_next.iter().skip_while(|t| **t != systemd_next[start]))
            .collect();
        assert!(
            common.len() >= 2,
            "{name} {expr}: systemd {systemd_next:?} cairn {cairn_next:?}"
        );
        for (a, b) in common {
            assert_eq!(
                a, b,
                "{name} {expr} in {tz}: systemd {systemd_next:?} cairn {cairn_next:?}"
            );
        }
    }
    // Both day fields restricted: cron ORs them, systemd ANDs them; refused with the reason.
    let bad = write_config(
        &fx,
        "bad.toml",
        &config.replace("0 4 * * 1-5", "0 4 1 * 1-5"),
    );
    let out = fx.run(&["generate", "systemd", "weekdays", "--config", s(&bad)]);
    out.code_is(2);
    assert!(out.stderr.contains("either matches"), "{out}");
    // The daemon's cron takes the nth weekday; neither a timer nor a CronJob can: both refuse
    // it as bad configuration, naming the field.
    let nth = write_config(
        &fx,
        "nth.toml",
        &config.replace("0 4 * * 1-5", "0 4 * * MON#2"),
    );
    for generate in [
        &["systemd", "weekdays"][..],
        &["cronjob", "weekdays", "--image", "x"],
    ] {
        let out = fx.run(&[&["generate"], generate, &["--config", s(&nth)]].concat());
        out.code_is(2);
        assert!(out.stderr.contains("\"MON#2\""), "{out}");
    }
}

#[test]
fn generated_cronjob_parses_and_mounts_everything_it_references() {
    use k8s_openapi::api::batch::v1::CronJob;
    let fx = Fixture::new();
    let creds = fx.path("aws-credentials");
    fs::write(
        &creds,
        "[default]\naws_access_key_id = x\naws_secret_access_key = y\n",
    )
    .unwrap();
    let config = format!(
        "state_dir = \"/var/lib/cairn\"\n[repositories.s3]\nurl = \"s3://bucket/cluster\"\nkey = \"{}\"\ns3 = {{ endpoint = \"https://s3.example.com\", credentials_file = \"{}\" }}\n\n[jobs.etcd]\nrepository = \"s3\"\nschedule = \"0 */6 * * *\"\ntimezone = \"Europe/Berlin\"\nsource = {{ kind = \"cluster\", endpoints = [\"https://localhost:2379\"], cacert = \"/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-serving-ca/ca-bundle.crt\", cert = \"/etc/kubernetes/static-pod-resources/etcd-certs/secrets/etcd-all-certs/etcd-peer-m0.crt\", key = \"/etc/kubernetes/static-pod-resources/etcd-certs/secrets/etcd-all-certs/etcd-peer-m0.key\" }}\nretention = {{ max_count = 15, max_size = \"10GB\" }}\n",
        s(&fx.write_key),
        s(&creds)
    );
    let cfg = write_config(&fx, "cairn.toml", &config);
    let out = fx.run(&[
        "generate",
        "cronjob",
        "etcd",
        "--config",
        s(&cfg),
        "--image",
        "quay.io/example/cairn:1",
    ]);
    out.ok();
    let cj: CronJob = serde_saphyr::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not a CronJob: {e}\n{}", out.stdout));
    let spec = cj.spec.as_ref().unwrap();
    assert_eq!(spec.schedule, "0 */6 * * *");
    assert_eq!(spec.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let pod = spec
        .job_template
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.node_selector
            .as_ref()
            .unwrap()
            .get("node-role.kubernetes.io/master")
            .map(String::as_str),
        Some("")
    );
    let tolerated: Vec<&str> = pod
        .tolerations
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|t| t.key.as_deref())
        .collect();
    assert!(
        tolerated.contains(&"node-role.kubernetes.io/master"),
        "{tolerated:?}"
    );
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("quay.io/example/cairn:1"));
    let args = c.args.as_ref().unwrap();
    let host_at = args.iter().position(|a| a == "--host").expect("--host");
    assert_eq!(args[host_at + 1], "$(NODE_NAME)");
    // Retention would count each node's runs apart: said on stderr and in the header.
    assert!(
        out.stderr.contains("sets no `host`")
            && out.stdout.contains("# Note: job etcd sets no `host`"),
        "{out}"
    );
    // With the job's own host, the node's name is not passed, and there is nothing to say.
    let hosted = write_config(
        &fx,
        "hosted.toml",
        &config.replace("[jobs.etcd]\n", "[jobs.etcd]\nhost = \"cluster-a\"\n"),
    );
    let out2 = fx.run(&["generate", "cronjob", "etcd", "--config", s(&hosted)]);
    out2.ok();
    let cj2: CronJob = serde_saphyr::from_str(&out2.stdout).unwrap();
    let args2 = cj2
        .spec
        .unwrap()
        .job_template
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert!(!args2.contains(&"--host".to_string()), "{args2:?}");
    assert!(!out2.stderr.contains("warning"), "{out2}");
    let node = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .unwrap();
    assert_eq!(
        node.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );
    // Every mount names a volume, every volume is mounted.
    let volumes = pod.volumes.as_ref().unwrap();
    let mounts = c.volume_mounts.as_ref().unwrap();
    let vnames: BTreeSet<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    let mnames: BTreeSet<&str> = mounts.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(vnames, mnames);
    // Every file the configuration names is under a mount; secrets come from the Secret with
    // the key the kubectl command in the header creates; the config from the ConfigMap.
    let mounted = |path: &str| {
        mounts
            .iter()
            .find(|m| Path::new(path).starts_with(&m.mount_path))
    };
    let volume = |name: &str| volumes.iter().find(|v| v.name == name).unwrap();
    for secret in [s(&fx.write_key), s(&creds)] {
        let m = mounted(secret).unwrap_or_else(|| panic!("{secret} is not mounted"));
        let v = volume(&m.name);
        assert_eq!(
            v.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("cairn-etcd-secrets")
        );
        let key = m.sub_path.as_deref().unwrap();
        assert!(
            out.stdout.contains(&format!("--from-file={key}={secret}")),
            "{}",
            out.stdout
        );
        assert_eq!(m.read_only, Some(true));
    }
    let m = mounted(s(&cfg)).expect("the configuration is mounted");
    assert_eq!(
        volume(&m.name).config_map.as_ref().unwrap().name,
        "cairn-etcd-config"
    );
    for host in [
        "/etc/kubernetes/static-pod-resources",
        "/etc/kubernetes/static-pod-resources/etcd-certs/secrets/etcd-all-certs/etcd-peer-m0.key",
        "/var/cache/cairn",
        "/var/lib/cairn",
    ] {
        let m = mounted(host).unwrap_or_else(|| panic!("{host} is not mounted"));
        assert!(volume(&m.name).host_path.is_some(), "{host}");
    }
    let cache = mounted("/var/cache/cairn").unwrap();
    assert_eq!(
        cache.read_only,
        Some(false),
        "the cache is writable and persists on the node"
    );
    let spr = mounted("/etc/kubernetes/static-pod-resources").unwrap();
    assert_eq!(spr.read_only, Some(true));
    assert!(c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .any(|e| e.name == "CAIRN_CACHE_DIR" && e.value.as_deref() == Some("/var/cache/cairn")));
}

/// A `host` job: a `[presets.NAME]` of the same file extends a built-in preset, `cairn run`
/// backs up the fake root with the inventory, and a CronJob for it is refused (in a pod the
/// inventory would be the container's).
#[test]
fn host_job_uses_presets_of_the_same_file_and_stays_on_the_host() {
    let fx = Fixture::new();
    let root = fx.dir("host-root");
    write_file(
        &root.join("etc/kubernetes/kubelet.conf"),
        b"apiVersion: v1\n",
    );
    write_file(&root.join("etc/site/extra.conf"), b"site=1\n");
    // The root's own package database, which the inventory lists.
    write_file(
        &root.join("var/lib/dpkg/status"),
        b"Package: kubelet\nStatus: install ok installed\nMaintainer: t\nArchitecture: amd64\n\
          Version: 1.29.3-1.1\nDescription: k\n",
    );
    let config = format!(
        "state_dir = \"{}\"\n{}\n[presets.site]\nextends = \"kubeadm-node\"\npaths = [\"/etc/site\"]\n\n[jobs.node]\nrepository = \"main\"\nschedule = \"0 2 * * *\"\nsource = {{ kind = \"host\", presets = [\"site\"], root = \"{}\" }}\n",
        s(&fx.path("state")),
        repository_table("main", s(&fx.repo), &fx.identity, None),
        s(&root)
    );
    let cfg = write_config(&fx, "cairn.toml", &config);
    fx.run(&["config", "check", "--config", s(&cfg)]).ok();
    run_job(&fx, &cfg, &["node"], &Env::new()).ok();

    let snaps = job_snapshots(&fx, "node");
    assert_eq!(snaps.len(), 1);
    let ls = fx.id(&["ls", &snaps[0]]);
    ls.ok();
    for want in [
        "/etc/site/extra.conf",
        "/etc/kubernetes/kubelet.conf",
        "/.cairn/inventory/packages.tsv",
    ] {
        assert!(ls.stdout.lines().any(|l| l.ends_with(want)), "{want}: {ls}");
    }
    let snap = fx.id(&["--json", "snapshots", "--tag", "job:node"]);
    snap.ok();
    assert!(snap.stdout.contains("\"host.presets\""), "{snap}");
    assert!(snap.stdout.contains("site"), "{snap}");

    let out = fx.run(&["generate", "cronjob", "node", "--config", s(&cfg)]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("generate systemd node"), "{out}");
    fx.run(&["generate", "systemd", "node", "--config", s(&cfg)])
        .ok();
}

/// A repository's `s3.profile` and `s3.credentials_file` are its own: read from the file the
/// configuration names (a profile it lacks is an error naming both), not from the environment.
#[test]
fn a_repository_reads_its_own_s3_profile_and_credentials_file() {
    let fx = Fixture::new();
    let s3 = s3::shared();
    let data = fx.dir("data");
    write_file(&data.join("f"), b"x");
    let creds = fx.path("aws-credentials");
    fs::write(
        &creds,
        "[backup]\naws_access_key_id = k\naws_secret_access_key = s\n",
    )
    .unwrap();
    let config = format!(
        "state_dir = \"{}\"\n[repositories.off]\nurl = \"s3://{}/repo\"\nidentity = \"{}\"\ns3 = {{ endpoint = \"{}\", profile = \"nightly\", credentials_file = \"{}\" }}\n\n[jobs.files]\nrepository = \"off\"\nsource = {{ kind = \"paths\", paths = [\"{}\"] }}\n",
        s(&fx.path("state")),
        s3::fresh_bucket("profile"),
        s(&fx.identity),
        s3.endpoint(),
        s(&creds),
        s(&data)
    );
    let cfg = write_config(&fx, "cairn.toml", &config);
    let out = run_job(&fx, &cfg, &["files"], &Env::new());
    assert_ne!(out.code, 0, "{out}");
    // (The run's summary on stdout carries the step's error.)
    for want in ["nightly", s(&creds)] {
        assert!(out.stdout.contains(want), "{want}: {out}");
    }
}

/// A job whose repository and copy destination live with two S3 providers: each is reached at
/// its own endpoint and every request to it is signed with its own profile's key and region,
/// never the other's (the proxies see the signatures), and the copy restores from the second.
#[test]
fn a_copy_between_two_s3_accounts_signs_each_side_with_its_own_profile() {
    let fx = Fixture::new();
    let moto = s3::shared();
    let (site_a, site_b) = (
        s3::FaultProxy::start(moto.addr()),
        s3::FaultProxy::start(moto.addr()),
    );
    let data = fx.dir("data");
    fs::write(data.join("f"), random_bytes(9, 200_000)).unwrap();
    let (main, off) = (
        Backend::S3.fresh(&fx.path("x"), "main"),
        Backend::S3.fresh(&fx.path("x"), "off"),
    );
    for (store, proxy) in [(&main, &site_a), (&off, &site_b)] {
        let env = proxy.env();
        let loc = store.location();
        let args = [
            "-r",
            &loc,
            "-i",
            s(&fx.identity),
            "init",
            "--like",
            s(&fx.repo),
        ];
        fx.run_env(&args, &env_refs(&env)).ok();
        proxy.take_signers();
    }
    let creds = |name: &str, profile: &str, key: &str| {
        let path = fx.path(name);
        fs::write(
            &path,
            format!(
                "[{profile}]\naws_access_key_id = {key}\naws_secret_access_key = secret-{key}\n"
            ),
        )
        .unwrap();
        path
    };
    let (creds_a, creds_b) = (
        creds("aws-a", "site-a", "key-a"),
        creds("aws-b", "site-b", "key-b"),
    );
    let table = |name: &str,
                 store: &Store,
                 proxy: &s3::FaultProxy,
                 profile,
                 file: &Path,
                 region| {
        format!(
            "[repositories.{name}]\nurl = \"{}\"\nidentity = \"{}\"\ns3 = {{ endpoint = \"{}\", region = \"{region}\", profile = \"{profile}\", credentials_file = \"{}\", timeout = 10, retries = 2 }}\n",
            store.location(),
            s(&fx.identity),
            proxy.endpoint(),
            s(file)
        )
    };
    let config = format!(
        "state_dir = \"{}\"\n{}{}\n[jobs.files]\nrepository = \"main\"\ncopy_to = [\"off\"]\nsource = {{ kind = \"paths\", paths = [\"{}\"] }}\n",
        s(&fx.path("state")),
        table("main", &main, &site_a, "site-a", &creds_a, "us-east-1"),
        table("off", &off, &site_b, "site-b", &creds_b, "eu-west-1"),
        s(&data)
    );
    let cfg = write_config(&fx, "cairn.toml", &config);
    // No credentials in the environment, and a home without ~/.aws.
    let env: Env = vec![
        ("HOME".into(), fx.dir("home").into_os_string()),
        ("NO_PROXY".into(), "127.0.0.1".into()),
        ("no_proxy".into(), "127.0.0.1".into()),
    ];
    let out = run_job(&fx, &cfg, &["files", "--json"], &env);
    out.ok();
    assert_eq!(out.json()["jobs"][0]["status"], "ok", "{out}");
    assert_eq!(site_a.take_signers(), ["key-a/us-east-1"], "{out}");
    assert_eq!(site_b.take_signers(), ["key-b/eu-west-1"], "{out}");
    // The copy is whole: restored from the second account, with that account's profile only.
    let restored = fx.path("restored");
    let (loc, target) = (off.location(), restored.display().to_string());
    let mut renv = site_b.env();
    renv.retain(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"));
    renv.push((
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        creds_b.into_os_string(),
    ));
    renv.push(("AWS_PROFILE".into(), "site-b".into()));
    renv.push(("HOME".into(), fx.path("home").into_os_string()));
    let args = [
        "-r",
        &loc,
        "-i",
        s(&fx.identity),
        "restore",
        "latest",
        "--target",
        &target,
    ];
    fx.run_env(&args, &env_refs(&renv)).ok();
    assert_eq!(
        fs::read(restored.join(data.strip_prefix("/").unwrap()).join("f")).unwrap(),
        random_bytes(9, 200_000)
    );
    assert_eq!(site_b.take_signers(), ["key-b/us-east-1"]);
}
