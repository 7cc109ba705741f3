//! Project exports against the Kubernetes API test server (tests/src/kube.rs): the real
//! `kubectl` reads every fixture from it and applies a restored tree to it, so the protocol
//! cairn is tested with is the one kubectl speaks.

use cairn_e2e::kube::{kubeconfig_text, openshift_project, Faults, KubeServer};
use cairn_e2e::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("kubectl on PATH (.ci/deps installs it)")
}

fn served(fx: &Fixture, faults: Faults) -> (KubeServer, PathBuf) {
    let server = KubeServer::start(faults);
    for o in openshift_project("shop") {
        server.put(o);
    }
    let kc = server.kubeconfig(&fx.dir("kube-src"));
    (server, kc)
}

/// Every `.yaml` below `dir`, relative, parsed.
fn documents(dir: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml")
                && !p.ends_with("kustomization.yaml")
            {
                let text = std::fs::read_to_string(&p).unwrap();
                let v: Value = serde_saphyr::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), v);
            }
        }
    }
    out
}

#[test]
fn kubectl_reads_every_fixture() {
    let fx = Fixture::new();
    let (_server, kc) = served(&fx, Faults::default());
    for o in openshift_project("shop") {
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        let group = o["apiVersion"]
            .as_str()
            .unwrap()
            .split_once('/')
            .map(|(g, _)| g)
            .unwrap_or("");
        let what = if group.is_empty() {
            kind.to_lowercase()
        } else {
            format!("{}.{group}", kind.to_lowercase())
        };
        let mut args = vec!["get", what.as_str(), name, "-o", "json"];
        if o["metadata"]["namespace"].is_string() {
            args.extend(["-n", "shop"]);
        }
        let out = kubectl(&kc, &args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["metadata"]["name"], name);
    }
}

#[test]
fn export_normalises_and_survives_faults() {
    let fx = Fixture::new();
    let faults = Faults {
        forbidden: vec!["monitoring.coreos.com/prometheusrules".into()],
        throttle_once: Some("configmaps".into()),
        expire_continue_once: Some("secrets".into()),
        ..Faults::default()
    };
    let (server, kc) = served(&fx, faults);
    let kc = kc.to_str().unwrap();
    let out = fx.wk(&[
        "--json",
        "backup",
        "project",
        "shop",
        "--kubeconfig",
        kc,
        "--page-size",
        "1",
    ]);
    // The forbidden type is named and makes the run partial; the 429 and 410 are absorbed.
    out.code_is(3);
    out.stderr_has(&["prometheusrules", "403"]);
    let j = out.json();
    let facts = &j["facts"];
    assert_eq!(facts["project.namespaces"], "shop");
    assert_eq!(facts["project.objects"], "17", "{out}");
    assert_eq!(facts["project.crds"], "1");
    assert!(server.requests() > 30);

    let target = fx.dir("manifests");
    fx.restore("latest", &target, &["--layout", "manifests"])
        .ok();
    let docs = documents(&target);
    let names: Vec<&str> = docs.keys().map(String::as_str).collect();
    for want in [
        "shop/_core/namespaces/shop.yaml",
        "shop/_core/configmaps/app-config.yaml",
        "shop/_core/secrets/db-password.yaml",
        "shop/_core/services/web.yaml",
        "shop/apps/deployments/web.yaml",
        "shop/route.openshift.io/routes/web.yaml",
        "shop/apps.openshift.io/deploymentconfigs/legacy.yaml",
        "shop/build.openshift.io/buildconfigs/web.yaml",
        "shop/image.openshift.io/imagestreams/web.yaml",
        "shop/example.com/widgets/gizmo.yaml",
        "shop/autoscaling/horizontalpodautoscalers/web.yaml",
        "_cluster/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com.yaml",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:#?}");
    }
    for gone in [
        "builder-token",
        "replicasets",
        "pods",
        "endpoints",
        "events",
        "kube-root-ca.crt",
    ] {
        assert!(
            !names.iter().any(|n| n.contains(gone)),
            "{gone} exported: {names:#?}"
        );
    }
    for (path, v) in &docs {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            assert!(v["metadata"].get(field).is_none(), "{path} keeps {field}");
        }
        assert!(v.get("status").is_none(), "{path} keeps status");
        assert!(
            v["apiVersion"].is_string() && v["kind"].is_string(),
            "{path}"
        );
    }
    let svc = &docs["shop/_core/services/web.yaml"];
    assert!(svc["spec"].get("clusterIP").is_none() && svc["spec"].get("clusterIPs").is_none());
    assert_eq!(
        docs["shop/autoscaling/horizontalpodautoscalers/web.yaml"]["apiVersion"],
        "autoscaling/v2"
    );
    let deploy = &docs["shop/apps/deployments/web.yaml"];
    assert!(deploy["metadata"].get("annotations").is_none(), "{deploy}");
    assert!(docs["shop/route.openshift.io/routes/web.yaml"]["spec"]
        .get("host")
        .is_none());
    assert!(docs["shop/_core/persistentvolumeclaims/data.yaml"]["spec"]
        .get("volumeName")
        .is_none());
    let kust = std::fs::read_to_string(target.join("kustomization.yaml")).unwrap();
    let pos = |s: &str| kust.find(s).unwrap_or_else(|| panic!("{s} not in\n{kust}"));
    assert!(pos("namespaces/shop.yaml") < pos("customresourcedefinitions"));
    assert!(pos("customresourcedefinitions") < pos("secrets/db-password"));
    assert!(pos("configmaps/app-config") < pos("deployments/web"));
    assert!(pos("deployments/web") < pos("routes/web"));
    assert!(pos("routes/web") < pos("widgets/gizmo"));
}

#[test]
fn unchanged_project_adds_nothing_and_diff_shows_the_change() {
    let fx = Fixture::new();
    let (server, kc) = served(&fx, Faults::default());
    let kc = kc.to_str().unwrap();
    let first = fx.wk(&["--json", "backup", "project", "shop", "--kubeconfig", kc]);
    first.ok();
    let s1 = Fixture::snap_id(&first.json());
    let second = fx.wk(&["--json", "backup", "project", "shop", "--kubeconfig", kc]);
    second.ok();
    assert_eq!(num(&second.json(), "added_bytes"), 0, "{second}");
    let s2 = Fixture::snap_id(&second.json());

    let mut cm = openshift_project("shop")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "app-config")
        .unwrap();
    cm["data"]["LOG_LEVEL"] = "debug".into();
    server.put(cm);
    let third = fx.wk(&["--json", "backup", "project", "shop", "--kubeconfig", kc]);
    third.ok();
    let s3 = Fixture::snap_id(&third.json());
    let unchanged = fx.wk(&["--json", "diff", &s1, &s2]);
    unchanged.ok();
    assert_eq!(
        unchanged.json()["changes"].as_array().unwrap().len(),
        0,
        "{unchanged}"
    );
    let diff = fx.wk(&["--json", "diff", &s2, &s3]);
    diff.ok();
    let changes: Vec<(String, String)> = diff.json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [(
            "/shop/_core/configmaps/app-config.yaml".to_string(),
            "modified".to_string()
        )]
    );
    let listed = fx.wk(&["snapshots"]);
    listed.ok();
    assert!(
        listed.stdout.contains("namespaces shop, 17 objects"),
        "{listed}"
    );
}

#[test]
fn round_trip_into_an_empty_cluster_under_a_new_name() {
    let fx = Fixture::new();
    let (_server, kc) = served(&fx, Faults::default());
    fx.wk(&[
        "backup",
        "project",
        "shop",
        "--kubeconfig",
        kc.to_str().unwrap(),
    ])
    .ok();

    let empty = KubeServer::start(Faults::default());
    let kc2 = empty.kubeconfig(&fx.dir("kube-dst"));
    let kc2s = kc2.to_str().unwrap();
    // `restore latest --apply` (with --dry-run when asked) into it, under the new name.
    let apply = |dry_run: bool| {
        let mut args = vec![
            "--json",
            "restore",
            "latest",
            "--apply",
            "--kubeconfig",
            kc2s,
        ];
        if dry_run {
            args.push("--dry-run");
        }
        args.extend(["--namespace-map", "shop=shop-restored"]);
        let out = fx.id(&args);
        out.ok();
        out
    };
    apply(true);
    assert!(
        empty.objects("shop-restored").is_empty(),
        "dry run stored objects"
    );
    let applied = apply(false);
    assert_eq!(applied.json()["counts"]["created"], 17, "{applied}");
    let again = apply(false);
    assert_eq!(again.json()["counts"]["unchanged"], 17, "{again}");
    // Changed in the cluster since: a dry run says the apply would configure it, and stores
    // nothing.
    let mut flags = empty
        .get("", "configmaps", "shop-restored", "feature-flags")
        .unwrap();
    flags["data"]["checkout"] = "false".into();
    empty.put(flags);
    let changed = empty.get("", "configmaps", "shop-restored", "feature-flags");
    let would = apply(true);
    assert_eq!(would.json()["counts"]["configured"], 1, "{would}");
    assert_eq!(would.json()["counts"]["unchanged"], 16, "{would}");
    assert_eq!(
        empty.get("", "configmaps", "shop-restored", "feature-flags"),
        changed
    );
    let fixed = apply(false);
    assert_eq!(fixed.json()["counts"]["configured"], 1, "{fixed}");

    // The applied objects, stripped of what the server added, equal the normalised documents.
    let target = fx.dir("manifests");
    fx.restore(
        "latest",
        &target,
        &[
            "--layout",
            "manifests",
            "--namespace-map",
            "shop=shop-restored",
        ],
    )
    .ok();
    let docs = documents(&target);
    let mut live = BTreeMap::new();
    for (g, r, mut v) in empty.objects("shop-restored") {
        let meta = v["metadata"].as_object_mut().unwrap();
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(k);
        }
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("shop-restored")
            .to_string();
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        let group = if g.is_empty() { "_core".to_string() } else { g };
        live.insert(format!("{ns}/{group}/{r}/{name}.yaml"), v);
    }
    let want: BTreeMap<String, Value> = docs
        .into_iter()
        .filter(|(k, _)| !k.starts_with("_cluster"))
        .collect();
    assert_eq!(live, want);
    assert!(empty
        .get(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "widgets.example.com"
        )
        .is_some());

    // The real kubectl applies the same tree (a fresh server: its CRD must exist before the
    // custom resource can be mapped, so kubectl, like on a real cluster, needs a second run).
    let third = KubeServer::start(Faults::default());
    let kc3 = third.kubeconfig(&fx.dir("kube-kubectl"));
    let t = target.to_str().unwrap();
    let _ = kubectl(
        &kc3,
        &["apply", "--server-side", "--validate=false", "-k", t],
    );
    let out = kubectl(
        &kc3,
        &["apply", "--server-side", "--validate=false", "-k", t],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("widget.example.com/gizmo serverside-applied"),
        "{stdout}"
    );
    assert_eq!(third.objects("shop-restored").len(), want.len());
}

/// An API server that does not answer: retried (said on stderr as it happens), then one error
/// that names the server and the cause; with --json, stderr is that one JSON object.
#[test]
fn unreachable_api_server_is_named_with_its_cause() {
    let fx = Fixture::new();
    let port = cairn_e2e::etcd::free_port();
    let kc = fx.dir("kube-nowhere").join("kubeconfig");
    std::fs::write(&kc, kubeconfig_text(&format!("https://127.0.0.1:{port}"))).unwrap();
    let out = fx.wk(&[
        "--json",
        "backup",
        "project",
        "shop",
        "--kubeconfig",
        s(&kc),
    ]);
    out.code_is(1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let err: Value = serde_json::from_str(lines[0]).unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && message.contains("refused"),
        "{message}"
    );
    assert!(fx.object_names("snapshots").is_empty());
}

/// A manifests restore writes only below its target, never through a symlink, readable by
/// its owner only (a project holds Secrets), and refuses before writing anything when
/// something is in the way or a namespace map names a namespace the snapshot does not hold.
#[test]
fn manifests_stay_in_the_target_and_private() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let fx = Fixture::new();
    let (_server, kc) = served(&fx, Faults::default());
    // A context the kubeconfig lacks is named with the ones it has; a name that cannot be a
    // namespace's is refused as a bad argument.
    let out = fx.wk(&[
        "backup",
        "project",
        "shop",
        "--kubeconfig",
        s(&kc),
        "--context",
        "nope",
    ]);
    out.code_is(1);
    assert!(
        out.stderr
            .contains("no context \"nope\" in the kubeconfig; it has: "),
        "{out}"
    );
    fx.wk(&["backup", "project", "a b", "--kubeconfig", s(&kc)])
        .code_is(2);
    fx.wk(&["backup", "project", "shop", "--kubeconfig", s(&kc)])
        .ok();

    // The Namespace's file has its creation time, as every object's has.
    let ls = fx.id(&["--json", "ls", "latest", "/shop/_core/namespaces"]);
    ls.ok();
    let ns_file = ls
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/shop/_core/namespaces/shop.yaml")
        .cloned();
    assert_eq!(ns_file.unwrap()["mtime"], "2024-05-01T10:00:00Z", "{ls}");

    let outside = fx.dir("outside");
    let target = fx.dir("trap");
    symlink(&outside, target.join("shop")).unwrap();
    for extra in [&[][..], &["--overwrite"]] {
        let out = fx.restore(
            "latest",
            &target,
            &[&["--layout", "manifests"], extra].concat(),
        );
        out.code_is(1);
        assert!(out.stderr.contains("is not a directory"), "{out}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{out}");
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            1,
            "wrote: {out}"
        );
    }

    // A typo in the map: refused as bad arguments, naming the namespaces there are.
    let clean = fx.path("clean");
    let out = fx.restore(
        "latest",
        &clean,
        &["--layout", "manifests", "--namespace-map", "shpo=shop-dr"],
    );
    out.code_is(2);
    assert!(
        out.stderr
            .contains("holds no namespace shpo (it holds: shop)"),
        "{out}"
    );
    assert!(!clean.exists(), "{out}");

    fx.restore("latest", &clean, &["--layout", "manifests"])
        .ok();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let secrets = clean.join("shop/_core/secrets");
    assert_eq!(mode(&secrets), 0o700);
    let secret = std::fs::read_dir(&secrets)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&secret), 0o600, "{}", secret.display());
    assert_eq!(mode(&clean.join("kustomization.yaml")), 0o600);
    // Everything is in the way now: refused whole, with the way out.
    let again = fx.restore("latest", &clean, &["--layout", "manifests"]);
    again.code_is(1);
    assert!(
        again
            .stderr
            .contains("already exist; nothing was written (use --overwrite"),
        "{again}"
    );
}

/// `restore --apply | head -c1`: the closed stdout ends the apply quietly (exit 141), with
/// no panic, before the rest of the objects are applied.
#[test]
fn apply_stops_quietly_when_stdout_closes() {
    use std::io::Read;
    use std::process::Stdio;
    let fx = Fixture::new();
    let (_server, kc) = served(&fx, Faults::default());
    fx.wk(&["backup", "project", "shop", "--kubeconfig", s(&kc)])
        .ok();
    let dst = KubeServer::start(Faults::default());
    let kc2 = dst.kubeconfig(&fx.dir("kube-dst"));
    let env = fx.env();
    let args = fx.id_args(&["restore", "latest", "--apply", "--kubeconfig", s(&kc2)]);
    let mut child = cairn_e2e::background::clean_command(&cairn_bin(), &env_refs(&env))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before cairn has opened the repository, so its first line meets the closed
    // pipe whatever the machine's load: one object is applied, then it stops.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panic"), "{stderr}");
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert_eq!(dst.objects("shop").len(), 1, "went on applying");
}

/// A server whose continue token never moves on: the type is reported (exit 3, the list named
/// with the reason), the other types are stored, and the backup does not run forever.
#[test]
fn a_continue_token_sent_again_ends_the_list() {
    let fx = Fixture::new();
    let (server, kc) = served(
        &fx,
        Faults {
            repeat_continue: Some("configmaps".into()),
            ..Faults::default()
        },
    );
    let out = fx.wk(&[
        "backup",
        "project",
        "shop",
        "--page-size",
        "1",
        "--kubeconfig",
        s(&kc),
    ]);
    out.code_is(3);
    assert!(out.stderr.contains("configmaps"), "{out}");
    assert!(
        out.stderr.contains("continue token it had sent before"),
        "{out}"
    );
    assert!(server.requests() < 100, "{} requests", server.requests());
}

/// An object larger than cairn reads from the API server (16 MiB): its type is reported
/// (exit 3, asked for in smaller pages first), the other objects are stored.
#[test]
fn an_answer_over_the_limit_is_refused_not_held() {
    let fx = Fixture::new();
    let (server, kc) = served(&fx, Faults::default());
    server.put(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "huge", "namespace": "shop", "creationTimestamp": "2024-05-01T10:00:00Z"},
        "data": {"blob": "x".repeat(17 << 20)},
    }));
    let out = fx.wk(&[
        "--json",
        "backup",
        "project",
        "shop",
        "--page-size",
        "4",
        "--kubeconfig",
        s(&kc),
    ]);
    out.code_is(3);
    assert!(out.stderr.contains("larger than 16 MiB"), "{out}");
    assert!(out.stderr.contains("configmaps"), "{out}");
    let ls = fx.id(&["ls", "latest", "/shop/apps/deployments"]);
    ls.ok();
    assert!(ls.stdout.contains("web.yaml"), "{ls}");
}

#[test]
fn a_name_too_long_for_a_file_refuses_a_tree_restore_with_advice() {
    let fx = Fixture::new();
    let (server, kc) = served(&fx, Faults::default());
    // A valid object name of 253 characters: `NAME.yaml` is longer than a file name may be.
    let long = format!("{}.example.com", "a".repeat(241));
    server.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": long, "namespace": "shop"}, "data": {"k": "v"}}));
    fx.wk(&["backup", "project", "shop", "--kubeconfig", s(&kc)])
        .ok();
    let target = fx.path("tree");
    let out = fx.id(&["restore", "latest", "--target", s(&target)]);
    out.code_is(1).stderr_has(&[
        &format!("/shop/_core/configmaps/{long}.yaml: its name is 258 bytes long"),
        "nothing was written",
        "hint: ",
        "--layout manifests",
    ]);
    assert!(!target.exists(), "a refused restore created the target");
    // Without it, the rest restores; the manifests layout shortens the name.
    fx.id(&[
        "restore",
        "latest",
        "--target",
        s(&target),
        "--include",
        "/shop/apps/**",
    ])
    .ok();
    let manifests = fx.path("manifests");
    fx.id(&[
        "restore",
        "latest",
        "--layout",
        "manifests",
        "--target",
        s(&manifests),
    ])
    .ok();
    assert!(documents(&manifests)
        .values()
        .any(|d| d["metadata"]["name"] == long.as_str()));
}

#[test]
fn an_answer_that_would_take_too_much_memory_parsed_is_refused() {
    // 660 kB of nested objects (`{"":{"":…}}`) take some 70 MB parsed, a map node each: the
    // estimate of the parsed size is bounded, not only the bytes. The other types are still
    // exported.
    let fx = Fixture::new();
    let (server, kc) = served(&fx, Faults::default());
    let deep = format!("{}0{}", r#"{"":"#.repeat(110), "}".repeat(110));
    let deep: Value = serde_json::from_str(&deep).unwrap();
    server.put(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dense", "namespace": "shop", "creationTimestamp": "2024-05-01T10:00:00Z"},
        "data": {"k": "v"},
        "nested": vec![deep; 1000],
    }));
    let out = fx.wk(&["backup", "project", "shop", "--kubeconfig", s(&kc)]);
    out.code_is(3)
        .stderr_has(&["configmaps", "more than 64 MiB parsed"]);
    let ls = fx.id(&["ls", "latest", "/shop/apps/deployments"]);
    assert!(ls.ok().stdout.contains("web.yaml"), "{ls}");
}
