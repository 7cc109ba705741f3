//! A small Kubernetes API server for the project tests: legacy discovery (`/api`, `/apis`,
//! group versions with `namespaced` and `verbs`), list with `limit`/`continue`, get, and
//! server-side apply (`PATCH` with `application/apply-patch+yaml`) that stores objects. Faults
//! on request: 403 for forbidden types, one 429 with Retry-After, one 410 for a continue token,
//! a continue token answered again and again.
//! The real `kubectl` is run against it to prove it speaks the protocol cairn relies on.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One served resource type.
#[derive(Debug, Clone)]
pub struct Kind {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub kind: String,
    pub namespaced: bool,
}

/// Faults to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// `group/resource` (core: `/resource`) answered 403.
    pub forbidden: Vec<String>,
    /// The first list of this resource is answered 429 with `Retry-After: 1`.
    pub throttle_once: Option<String>,
    /// The first continue token presented for this resource is answered 410 Gone.
    pub expire_continue_once: Option<String>,
    /// Lists of this resource always answer the first continue token again (never ending).
    pub repeat_continue: Option<String>,
}

type Key = (String, String, String, String); // group, resource, namespace, name

struct State {
    kinds: Vec<Kind>,
    objects: BTreeMap<Key, Value>,
    rv: u64,
    requests: u64,
    faults: Faults,
    fired: BTreeSet<String>,
}

/// A running server on 127.0.0.1 (plain HTTP).
pub struct KubeServer {
    pub url: String,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

fn builtin_kinds() -> Vec<Kind> {
    let k = |g: &str, v: &str, r: &str, kind: &str, ns: bool| Kind {
        group: g.into(),
        version: v.into(),
        resource: r.into(),
        kind: kind.into(),
        namespaced: ns,
    };
    vec![
        k("", "v1", "namespaces", "Namespace", false),
        k("", "v1", "configmaps", "ConfigMap", true),
        k("", "v1", "secrets", "Secret", true),
        k("", "v1", "serviceaccounts", "ServiceAccount", true),
        k("", "v1", "services", "Service", true),
        k("", "v1", "pods", "Pod", true),
        k("", "v1", "endpoints", "Endpoints", true),
        k("", "v1", "events", "Event", true),
        k(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
        ),
        k("apps", "v1", "deployments", "Deployment", true),
        k("apps", "v1", "replicasets", "ReplicaSet", true),
        k("apps", "v1", "statefulsets", "StatefulSet", true),
        k("batch", "v1", "cronjobs", "CronJob", true),
        k(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
        ),
        k(
            "autoscaling",
            "v1",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
        ),
        k("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
        k(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
        ),
        k("networking.k8s.io", "v1", "ingresses", "Ingress", true),
        k(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        ),
        k("route.openshift.io", "v1", "routes", "Route", true),
        k(
            "apps.openshift.io",
            "v1",
            "deploymentconfigs",
            "DeploymentConfig",
            true,
        ),
        k(
            "build.openshift.io",
            "v1",
            "buildconfigs",
            "BuildConfig",
            true,
        ),
        k(
            "image.openshift.io",
            "v1",
            "imagestreams",
            "ImageStream",
            true,
        ),
        k(
            "monitoring.coreos.com",
            "v1",
            "prometheusrules",
            "PrometheusRule",
            true,
        ),
        k(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        ),
    ]
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code.as_u16()});
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Merge `patch` into `into`: maps recursively, everything else replaced.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

impl State {
    fn kind_of(&self, group: &str, resource: &str) -> Option<Kind> {
        // The first listed version is the preferred one.
        self.kinds
            .iter()
            .find(|k| k.group == group && k.resource == resource)
            .cloned()
    }

    /// Store `obj` as the server would create it: identity, version, timestamps, fields.
    fn create(&mut self, kind: &Kind, mut obj: Value, manager: &str) -> Value {
        self.rv += 1;
        let rv = self.rv;
        let meta = obj["metadata"].as_object_mut().expect("metadata");
        meta.insert(
            "uid".into(),
            format!("00000000-0000-4000-8000-{rv:012}").into(),
        );
        meta.insert("resourceVersion".into(), rv.to_string().into());
        meta.entry("creationTimestamp")
            .or_insert_with(|| "2024-05-01T10:00:00Z".into());
        meta.insert(
            "managedFields".into(),
            json!([{"manager": manager, "operation": "Apply", "apiVersion": group_version(&kind.group, &kind.version), "fieldsType": "FieldsV1", "fieldsV1": {}}]),
        );
        if kind.resource == "customresourcedefinitions" {
            obj["status"] = json!({"conditions": [{"type": "Established", "status": "True"}, {"type": "NamesAccepted", "status": "True"}]});
            self.register_crd(&obj);
        }
        obj
    }

    fn register_crd(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let (Some(group), Some(plural), Some(kind)) = (
            spec["group"].as_str(),
            spec["names"]["plural"].as_str(),
            spec["names"]["kind"].as_str(),
        ) else {
            return;
        };
        let version = spec["versions"][0]["name"].as_str().unwrap_or("v1");
        if self.kind_of(group, plural).is_none() {
            self.kinds.push(Kind {
                group: group.into(),
                version: version.into(),
                resource: plural.into(),
                kind: kind.into(),
                namespaced: spec["scope"] == "Namespaced",
            });
        }
    }

    fn discovery(&self, path: &str) -> Option<Value> {
        if path == "/api" {
            return Some(json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}));
        }
        if path == "/apis" {
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for k in self.kinds.iter().filter(|k| !k.group.is_empty()) {
                match groups.iter_mut().find(|(g, _)| *g == k.group) {
                    Some((_, vs)) if !vs.contains(&k.version) => vs.push(k.version.clone()),
                    Some(_) => {}
                    None => groups.push((k.group.clone(), vec![k.version.clone()])),
                }
            }
            let groups: Vec<Value> = groups
                .iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            return Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
        }
        let (group, version) = match path.split('/').collect::<Vec<_>>()[..] {
            ["", "api", v] => ("", v),
            ["", "apis", g, v] => (g, v),
            _ => return None,
        };
        let resources: Vec<Value> = self
            .kinds
            .iter()
            .filter(|k| k.group == group && k.version == version)
            .map(|k| {
                json!({"name": k.resource, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced,
                    "kind": k.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
            })
            .collect();
        if resources.is_empty() {
            return None;
        }
        Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group_version(group, version), "resources": resources}))
    }
}

/// What a resource path names.
struct Target {
    group: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
}

fn parse(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, tail @ ..] => (Some(ns.to_string()), [&[*r][..], tail].concat()),
        _ => (None, rest.to_vec()),
    };
    let (resource, name) = match rest.as_slice() {
        [r] => (r.to_string(), None),
        [r, n] => (r.to_string(), Some(n.to_string())),
        _ => return None,
    };
    Some(Target {
        group: group.into(),
        namespace,
        resource,
        name,
    })
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(Ok(x)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(
    state: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = state.lock().expect("state");
    st.requests += 1;
    let path = uri.path();
    match path {
        "/version" => {
            return ok(
                json!({"major": "1", "minor": "30", "gitVersion": "v1.30.0+cairn-test",
                "platform": "linux/amd64"}),
            )
        }
        "/_stats" => return ok(json!({"requests": st.requests, "objects": st.objects.len()})),
        _ => {}
    }
    if method == Method::GET {
        if let Some(v) = st.discovery(path) {
            return ok(v);
        }
    }
    let Some(t) = parse(path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        );
    };
    let Some(kind) = st.kind_of(&t.group, &t.resource) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        );
    };
    let gr = format!("{}/{}", t.group, t.resource);
    if st.faults.forbidden.contains(&gr) {
        return status(StatusCode::FORBIDDEN, "Forbidden", format!(
            "{}.{} is forbidden: User \"system:serviceaccount:backup:cairn\" cannot list resource \"{}\" in API group \"{}\"",
            t.resource, t.group, t.resource, t.group));
    }
    let q = query(&uri);
    // A namespace object is named by the path segment after `namespaces`.
    let (ns, name) = if kind.namespaced {
        (t.namespace.clone().unwrap_or_default(), t.name.clone())
    } else {
        (String::new(), t.name.clone())
    };
    match (method, name) {
        (Method::GET, None) => {
            if st.faults.throttle_once.as_deref() == Some(&t.resource)
                && st.fired.insert(format!("429 {gr}"))
            {
                let mut r = status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "too many requests, please try again later",
                );
                r.headers_mut()
                    .insert("retry-after", "1".parse().expect("header"));
                return r;
            }
            let limit: usize = q
                .get("limit")
                .and_then(|l| l.parse().ok())
                .filter(|&l| l > 0)
                .unwrap_or(usize::MAX);
            let start: usize = match q.get("continue") {
                Some(tok) => {
                    if st.faults.expire_continue_once.as_deref() == Some(&t.resource)
                        && st.fired.insert(format!("410 {gr}"))
                    {
                        return status(StatusCode::GONE, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.");
                    }
                    match tok.strip_prefix("offset-").and_then(|o| o.parse().ok()) {
                        Some(o) => o,
                        None => {
                            return status(
                                StatusCode::BAD_REQUEST,
                                "BadRequest",
                                "invalid continue token",
                            )
                        }
                    }
                }
                None => 0,
            };
            let all: Vec<&Value> = st
                .objects
                .iter()
                .filter(|((g, r, n, _), _)| {
                    *g == t.group
                        && *r == t.resource
                        && (t.namespace.is_none() || Some(n) == t.namespace.as_ref())
                })
                .map(|(_, v)| v)
                .collect();
            let end = start.saturating_add(limit).min(all.len());
            let items: Vec<Value> = all[start.min(end)..end]
                .iter()
                .map(|v| {
                    // Typed lists leave kind and apiVersion out of their items.
                    let mut v = (*v).clone();
                    if let Some(o) = v.as_object_mut() {
                        o.remove("kind");
                        o.remove("apiVersion");
                    }
                    v
                })
                .collect();
            let mut meta = json!({"resourceVersion": st.rv.to_string()});
            if st.faults.repeat_continue.as_deref() == Some(&t.resource) {
                meta["continue"] = "offset-0".into();
            } else if end < all.len() {
                meta["continue"] = format!("offset-{end}").into();
                meta["remainingItemCount"] = (all.len() - end).into();
            }
            ok(
                json!({"kind": format!("{}List", kind.kind), "apiVersion": group_version(&t.group, &kind.version),
                "metadata": meta, "items": items}),
            )
        }
        (Method::GET, Some(name)) => {
            match st
                .objects
                .get(&(t.group.clone(), t.resource.clone(), ns, name.clone()))
            {
                Some(v) => ok(v.clone()),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{}.{} \"{name}\" not found", t.resource, t.group),
                ),
            }
        }
        (Method::PATCH, Some(name)) => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct.starts_with("application/apply-patch+yaml") {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", format!("the body of the request was in an unknown format ({ct}); this test server only takes server-side apply"));
            }
            let Some(manager) = q.get("fieldManager").cloned() else {
                return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
            };
            let patch: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => match serde_saphyr::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        return status(
                            StatusCode::BAD_REQUEST,
                            "BadRequest",
                            format!("error decoding YAML: {e}"),
                        )
                    }
                },
            };
            if patch["metadata"]["name"].as_str() != Some(name.as_str()) {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the name of the object does not match the name on the URL",
                );
            }
            if kind.namespaced
                && patch["metadata"]["namespace"]
                    .as_str()
                    .is_some_and(|n| n != ns)
            {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
            }
            let dry = q.contains_key("dryRun");
            let key = (
                t.group.clone(),
                t.resource.clone(),
                ns.clone(),
                name.clone(),
            );
            match st.objects.get(&key).cloned() {
                Some(old) => {
                    let mut new = old.clone();
                    merge(&mut new, &patch);
                    if new != old && !dry {
                        st.rv += 1;
                        new["metadata"]["resourceVersion"] = st.rv.to_string().into();
                        st.objects.insert(key, new.clone());
                    }
                    ok(if dry {
                        new
                    } else {
                        st.objects[&(t.group, t.resource, ns, name)].clone()
                    })
                }
                None => {
                    let mut obj = patch;
                    if kind.namespaced {
                        obj["metadata"]["namespace"] = ns.into();
                    }
                    let obj = st.create(&kind, obj, &manager);
                    if !dry {
                        st.objects.insert(key, obj.clone());
                    }
                    (
                        StatusCode::CREATED,
                        [("content-type", "application/json")],
                        obj.to_string(),
                    )
                        .into_response()
                }
            }
        }
        (m, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{m} is not supported by this test server"),
        ),
    }
}

impl KubeServer {
    /// Start a server with no objects, on a free port.
    pub fn start(faults: Faults) -> KubeServer {
        Self::start_on(0, faults)
    }

    /// Start a server on `port` (0: any free one).
    pub fn start_on(port: u16, faults: Faults) -> KubeServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let state = Arc::new(Mutex::new(State {
            kinds: builtin_kinds(),
            objects: BTreeMap::new(),
            rv: 1000,
            requests: 0,
            faults,
            fired: BTreeSet::new(),
        }));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let s = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { handle(&s, method, uri, headers, body) }
            },
        );
        rt.spawn(async move { axum::serve(listener, app).await });
        KubeServer {
            url,
            state,
            _rt: rt,
        }
    }

    /// Store `obj` as if created by a client (server fields added).
    pub fn put(&self, obj: Value) {
        let mut st = self.state.lock().expect("state");
        let (group, _) = match obj["apiVersion"]
            .as_str()
            .expect("apiVersion")
            .split_once('/')
        {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), String::new()),
        };
        let kind_name = obj["kind"].as_str().expect("kind").to_string();
        let kind = st
            .kinds
            .iter()
            .find(|k| k.group == group && k.kind == kind_name)
            .cloned()
            .unwrap_or_else(|| panic!("no type {group} {kind_name}"));
        let ns = if kind.namespaced {
            obj["metadata"]["namespace"]
                .as_str()
                .expect("namespace")
                .to_string()
        } else {
            String::new()
        };
        let name = obj["metadata"]["name"].as_str().expect("name").to_string();
        let obj = st.create(&kind, obj, "kubectl-client-side-apply");
        st.objects
            .insert((group, kind.resource.clone(), ns, name), obj);
    }

    /// The stored object, if any.
    pub fn get(&self, group: &str, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let st = self.state.lock().expect("state");
        st.objects
            .get(&(group.into(), resource.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Every stored object of `namespace` (and the Namespace itself), with their group and
    /// resource.
    pub fn objects(&self, namespace: &str) -> Vec<(String, String, Value)> {
        let st = self.state.lock().expect("state");
        st.objects
            .iter()
            .filter(|((_, r, n, name), _)| {
                n == namespace || (r == "namespaces" && name == namespace)
            })
            .map(|((g, r, _, _), v)| (g.clone(), r.clone(), v.clone()))
            .collect()
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.state.lock().expect("state").requests
    }

    /// Write a kubeconfig for this server into `dir`; returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig_text(&self.url)).expect("write kubeconfig");
        path
    }
}

/// A kubeconfig naming `url` with a bearer token.
pub fn kubeconfig_text(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\nusers:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\n"
    )
}

/// A project shaped like a real OpenShift one: Namespace, ConfigMaps (and the published CA
/// bundle), Secrets (one a service-account token), a ServiceAccount, RBAC, a Service with a
/// cluster IP, a Deployment with its ReplicaSet and Pod, Endpoints, an Event, a PVC, a Route,
/// a DeploymentConfig, a BuildConfig, an ImageStream, an HPA, and a custom resource with its
/// CRD (cluster-scoped).
pub fn openshift_project(ns: &str) -> Vec<Value> {
    let meta = |name: &str| json!({"name": name, "namespace": ns, "labels": {"app": "shop"}});
    let owner = |kind: &str, name: &str, api: &str| {
        json!([{"apiVersion": api, "kind": kind, "name": name,
        "uid": "11111111-2222-4333-8444-555555555555", "controller": true, "blockOwnerDeletion": true}])
    };
    let pod_spec = json!({"containers": [{"name": "web", "image": "image-registry.openshift-image-registry.svc:5000/shop/web@sha256:0123", "ports": [{"containerPort": 8080}]}]});
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns},
            "annotations": {"openshift.io/display-name": "Shop", "openshift.io/sa.scc.mcs": "s0:c26,c5", "openshift.io/sa.scc.uid-range": "1000670000/10000"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("app-config"), "data": {"LOG_LEVEL": "info", "app.properties": "a=1\nb=2\n"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("feature-flags"), "data": {"checkout": "true"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": ns}, "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("db-password"), "type": "Opaque", "data": {"password": "czNjcjN0"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "builder-token-x7k2p", "namespace": ns,
            "annotations": {"kubernetes.io/service-account.name": "builder", "kubernetes.io/service-account.uid": "9a1e"}},
            "type": "kubernetes.io/service-account-token", "data": {"token": "ZXlKaGJHY2lPaUpTVXpJMU5pSXNJbXRwWkNJNklpSjk="}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("builder")}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta("deployer"),
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("deployer"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "builder", "namespace": ns}]}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("web"),
            "spec": {"clusterIP": "172.30.12.34", "clusterIPs": ["172.30.12.34"], "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
                "selector": {"app": "web"}, "type": "ClusterIP", "sessionAffinity": "None"}, "status": {"loadBalancer": {}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns,
            "annotations": {"pv.kubernetes.io/bind-completed": "yes", "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pvc-3f2a", "storageClassName": "gp3-csi"},
            "status": {"phase": "Bound"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns, "generation": 3,
            "annotations": {"deployment.kubernetes.io/revision": "2", "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"apps/v1\"}"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}},
            "status": {"availableReplicas": 2, "observedGeneration": 3}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-5d9c8", "namespace": ns, "ownerReferences": owner("Deployment", "web", "apps/v1")},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-5d9c8-abcde", "namespace": ns, "ownerReferences": owner("ReplicaSet", "web-5d9c8", "apps/v1")},
            "spec": pod_spec, "status": {"phase": "Running", "podIP": "10.128.2.17"}}),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("web"), "subsets": [{"addresses": [{"ip": "10.128.2.17"}], "ports": [{"port": 8080}]}]}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("web.17c2"), "reason": "Scheduled", "message": "Successfully assigned", "involvedObject": {"kind": "Pod", "name": "web-5d9c8-abcde"}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta("web"),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 5}}),
        json!({"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": "web", "namespace": ns, "annotations": {"openshift.io/host.generated": "true"}},
            "spec": {"host": "web-shop.apps.cluster.example.com", "to": {"kind": "Service", "name": "web", "weight": 100}, "port": {"targetPort": "http"}, "tls": {"termination": "edge"}, "wildcardPolicy": "None"},
            "status": {"ingress": [{"host": "web-shop.apps.cluster.example.com", "routerName": "default"}]}}),
        json!({"apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig", "metadata": meta("legacy"),
            "spec": {"replicas": 1, "selector": {"app": "legacy"}, "strategy": {"type": "Rolling"}, "template": {"metadata": {"labels": {"app": "legacy"}}, "spec": pod_spec},
                "triggers": [{"type": "ConfigChange"}, {"type": "ImageChange", "imageChangeParams": {"automatic": true, "containerNames": ["web"], "from": {"kind": "ImageStreamTag", "name": "web:latest"}}}]},
            "status": {"latestVersion": 4}}),
        json!({"apiVersion": "build.openshift.io/v1", "kind": "BuildConfig", "metadata": meta("web"),
            "spec": {"source": {"type": "Git", "git": {"uri": "https://git.example.com/shop/web.git"}}, "strategy": {"type": "Docker", "dockerStrategy": {}},
                "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}}, "triggers": [{"type": "ConfigChange"}]},
            "status": {"lastVersion": 7}}),
        json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": meta("web"),
            "spec": {"lookupPolicy": {"local": false}}, "status": {"dockerImageRepository": "image-registry.openshift-image-registry.svc:5000/shop/web"}}),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta("gizmo"), "spec": {"size": 3, "color": "teal"}}),
    ]
}

/// `n` objects for the benchmark: mostly ConfigMaps and Secrets, one in twenty-five a
/// Deployment (with a Service every other time).
pub fn bulk_project(ns: &str, n: usize) -> Vec<Value> {
    let mut out = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})];
    for i in 0..n {
        let meta = json!({"name": format!("obj-{i:05}"), "namespace": ns, "labels": {"app": format!("app-{}", i % 40), "tier": "backend"}});
        let payload: String = (0..8).map(|j| format!("key{j}=value-{i}-{j}\n")).collect();
        out.push(match i % 25 {
            0 => json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": format!("app-{i}")}},
                    "template": {"metadata": {"labels": {"app": format!("app-{i}")}}, "spec": {"containers": [{"name": "main", "image": format!("registry.example.com/app:{i}"), "env": [{"name": "MODE", "value": "prod"}]}]}}}}),
            1 if i % 2 == 1 => json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                "spec": {"clusterIP": format!("172.30.{}.{}", i / 250 % 250, i % 250), "ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": format!("app-{i}")}}}),
            x if x % 2 == 0 => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"config.properties": payload}}),
            _ => json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": {"token": format!("c2VjcmV0LXZhbHVlLW51bWJlci0{i:08}")}}),
        });
    }
    out
}
