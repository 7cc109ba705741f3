//! Export: list every type of each namespace page by page, normalise each object and hand its
//! document to the caller, who stores it. Only one list page is held at a time.

use super::client::{status_error, Kube};
use super::discovery::ResourceType;
use super::layout::{to_yaml, ObjectPath, CLUSTER, CORE};
use super::normalize::{created_ns, normalize, skip_reason};
use super::{Error, Result};
use http::StatusCode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// How to export.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keep objects a controller regenerates (Pods of ReplicaSets, ReplicaSets of
    /// Deployments, Endpoints, EndpointSlices).
    pub include_owned: bool,
    /// Objects per list request.
    pub page_size: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            include_owned: false,
            page_size: 500,
        }
    }
}

/// What an export did.
#[derive(Debug, Default)]
pub struct Exported {
    /// Objects stored per namespace (CRDs not included).
    pub per_namespace: Vec<(String, u64)>,
    /// CustomResourceDefinitions stored.
    pub crds: u64,
    /// Objects left out, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Types or objects that could not be read (`NS/GROUP/RESOURCE` and the server's answer).
    pub unreadable: Vec<(String, String)>,
    /// Lists restarted after their continue token expired.
    pub restarts: u64,
}

impl Exported {
    /// Objects stored, CRDs included.
    pub fn objects(&self) -> u64 {
        self.per_namespace.iter().map(|(_, n)| n).sum::<u64>() + self.crds
    }
}

/// Groups served by Kubernetes itself, whose types are never CRDs.
const BUILTIN_GROUPS: &[&str] = &[
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "coordination.k8s.io",
    "storage.k8s.io",
    "authorization.k8s.io",
];

/// Most pages of one list (with the default page size, 50 million objects).
const MAX_PAGES: u32 = 100_000;

/// How many times one list is restarted after a 410 Gone before the type is reported.
const MAX_RESTARTS: u32 = 3;

/// Every namespace of the cluster, sorted.
pub fn namespaces(kube: &Kube, page_size: u32) -> Result<Vec<String>> {
    let mut out = Vec::new();
    list_pages(kube, "/api/v1/namespaces", page_size, |item| {
        let name = item.pointer("/metadata/name").and_then(Value::as_str);
        if let Some(bad) = name.filter(|n| !super::is_namespace(n)) {
            tracing::warn!(
                "the server lists a namespace named {bad:?}, which is not a namespace name (a broken or hostile API server); left out"
            );
            return Ok(());
        }
        if let Some(n) = name {
            out.push(n.to_string());
        }
        Ok(())
    })??;
    out.sort();
    Ok(out)
}

/// List `path` page by page, calling `each` for every item. The outer error is fatal (the
/// store failed, the server is unreachable); the inner one is the server refusing this list.
/// A 410 Gone on a continue token restarts the list from the start: items already seen are
/// passed again, and the caller's later document for a path replaces the earlier one.
fn list_pages(
    kube: &Kube,
    path: &str,
    page_size: u32,
    mut each: impl FnMut(Value) -> Result<()>,
) -> Result<Result<u32>> {
    let mut token: Option<String> = None;
    let mut restarts = 0;
    // A server that hands back a token it gave before would keep the list going forever
    // (their hashes are kept, not the tokens: one may be megabytes), and one that never stops
    // handing out new ones is stopped after MAX_PAGES.
    let mut tokens = std::collections::HashSet::new();
    let mut pages = 0u32;
    let mut limit = page_size;
    loop {
        let mut url = format!("{path}?limit={limit}");
        if let Some(t) = &token {
            url.push_str("&continue=");
            url.push_str(&super::url_encode(t));
        }
        let a = match kube.get(&url) {
            // A page too large to read is asked for again in smaller pages; one object too
            // large is this list's problem.
            Err(Error::TooLarge { .. }) if limit > 1 => {
                limit /= 2;
                tracing::info!(
                    "{path}: a page over the answer limit; asking for {limit} objects a page"
                );
                continue;
            }
            Err(e @ Error::TooLarge { .. }) => return Ok(Err(e)),
            other => other?,
        };
        if a.status == StatusCode::GONE && token.is_some() && restarts < MAX_RESTARTS {
            tracing::info!("{path}: continue token expired, listing again from the start");
            restarts += 1;
            token = None;
            tokens.clear();
            pages = 0;
            continue;
        }
        if !a.status.is_success() {
            return Ok(Err(status_error("GET", path, &a)));
        }
        let mut page = a.json(path)?;
        token = page
            .pointer("/metadata/continue")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(String::from);
        if let Some(Value::Array(items)) = page.get_mut("items").map(Value::take) {
            for item in items {
                each(item)?;
            }
        }
        pages += 1;
        match &token {
            None => return Ok(Ok(restarts)),
            Some(_) if pages >= MAX_PAGES => {
                return Ok(Err(Error::invalid(
                    path,
                    format!("the list goes on past {MAX_PAGES} pages (a broken or hostile API server)"),
                )))
            }
            Some(t) if !tokens.insert(*blake3::hash(t.as_bytes()).as_bytes()) => {
                return Ok(Err(Error::invalid(
                    path,
                    "the server sent a continue token it had sent before: the list would never end (a broken or hostile API server)",
                )))
            }
            Some(_) => {}
        }
    }
}

/// Export `namespaces`: the Namespace object, every object of `types` in it, and the CRDs of
/// the custom resources found. `store` receives each document with its path and mtime.
pub fn export(
    kube: &Kube,
    types: &[ResourceType],
    namespaces: &[String],
    opts: &Options,
    mut store: impl FnMut(&ObjectPath, &[u8], i64) -> Result<()>,
) -> Result<Exported> {
    let mut out = Exported::default();
    let mut custom: BTreeSet<(String, String)> = BTreeSet::new();
    for ns in namespaces {
        let mut count = 0u64;
        let ns_path = format!("/api/v1/namespaces/{ns}");
        let a = kube.get(&ns_path)?;
        match a.status {
            s if s.is_success() => {
                let mut obj = a.json(&ns_path)?;
                // Before normalising, which drops the creation time.
                let created = created_ns(&obj);
                normalize("", "namespaces", "v1", "Namespace", &mut obj);
                let path = ObjectPath {
                    namespace: ns.clone(),
                    group: CORE.into(),
                    resource: "namespaces".into(),
                    name: ns.clone(),
                };
                emit(&path, &obj, created, &mut store)?;
                count += 1;
            }
            StatusCode::NOT_FOUND => {
                return Err(Error::invalid(
                    format!("namespace {ns}"),
                    "does not exist on the server (see `kubectl get namespaces`)",
                ))
            }
            _ => out.unreadable.push((
                format!("{ns}/{CORE}/namespaces"),
                status_error("GET", &ns_path, &a).to_string(),
            )),
        }
        for t in types {
            let list = format!("{}/namespaces/{ns}/{}", t.base(), t.resource);
            let api_version = if t.group.is_empty() {
                t.version.clone()
            } else {
                format!("{}/{}", t.group, t.version)
            };
            // Names, not items: a list restarted after a 410 passes its items again.
            let mut found = std::collections::HashSet::new();
            let mut refused = None;
            let outcome = list_pages(kube, &list, opts.page_size, |mut obj| {
                if let Some(why) = skip_reason(&t.group, &t.resource, &obj, opts.include_owned) {
                    *out.skipped.entry(why).or_default() += 1;
                    return Ok(());
                }
                let created = created_ns(&obj);
                let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) else {
                    return Err(Error::invalid(&list, "an item without metadata.name"));
                };
                if name.chars().any(char::is_control) {
                    refused.get_or_insert(Error::invalid(
                        format!("{list}: item {name:?}"),
                        "a name with control characters, which Kubernetes does not allow (a broken or hostile API server); left out",
                    ));
                    return Ok(());
                }
                let path = ObjectPath {
                    namespace: ns.clone(),
                    group: t.group_dir().to_string(),
                    resource: t.resource.clone(),
                    name: name.to_string(),
                };
                normalize(&t.group, &t.resource, &api_version, &t.kind, &mut obj);
                emit(&path, &obj, created, &mut store)?;
                found.insert(path.name);
                Ok(())
            })?;
            let found = found.len() as u64;
            let outcome = match (outcome, refused) {
                (Ok(_), Some(e)) => Err(e),
                (o, _) => o,
            };
            match outcome {
                Ok(restarts) => out.restarts += u64::from(restarts),
                Err(e) => out
                    .unreadable
                    .push((format!("{ns}/{}", t.display()), e.to_string())),
            }
            count += found;
            if found > 0 && !t.group.is_empty() && !BUILTIN_GROUPS.contains(&t.group.as_str()) {
                custom.insert((t.group.clone(), t.resource.clone()));
            }
        }
        out.per_namespace.push((ns.clone(), count));
    }
    for (group, resource) in custom {
        let name = format!("{resource}.{group}");
        let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
        let a = kube.get(&path)?;
        if a.status == StatusCode::NOT_FOUND {
            continue; // served by an aggregated API server, not a CRD
        }
        if !a.status.is_success() {
            out.unreadable.push((
                format!("{CLUSTER}/apiextensions.k8s.io/customresourcedefinitions/{name}"),
                status_error("GET", &path, &a).to_string(),
            ));
            continue;
        }
        let mut obj = a.json(&path)?;
        let created = created_ns(&obj);
        normalize(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            &mut obj,
        );
        let at = ObjectPath {
            namespace: CLUSTER.into(),
            group: "apiextensions.k8s.io".into(),
            resource: "customresourcedefinitions".into(),
            name,
        };
        emit(&at, &obj, created, &mut store)?;
        out.crds += 1;
    }
    Ok(out)
}

fn emit(
    path: &ObjectPath,
    obj: &Value,
    mtime_ns: i64,
    store: &mut impl FnMut(&ObjectPath, &[u8], i64) -> Result<()>,
) -> Result<()> {
    let doc = to_yaml(obj).map_err(|e| Error::invalid(path.to_string(), e))?;
    store(path, doc.as_bytes(), mtime_ns)
}
