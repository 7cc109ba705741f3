//! Restore a project snapshot: its documents in creation order, renamed by a namespace map,
//! written as a kustomization or applied to a cluster with server-side apply.

use super::client::{status_error, Kube};
use super::discovery::base_path;
use super::layout::{to_yaml, ObjectPath, CLUSTER, CORE, SUFFIX};
use super::order::rank;
use super::{Error, Result};
use crate::loader::Loader;
use cairn_format::tree::NodeKind;
use cairn_format::Id;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The field manager of cairn's server-side applies.
pub const FIELD_MANAGER: &str = "cairn";
/// How long to wait for an applied CRD to be Established.
const CRD_WAIT: Duration = Duration::from_secs(60);

/// One stored document.
#[derive(Debug, Clone)]
pub struct Document {
    pub path: ObjectPath,
    content: Vec<Id>,
    size: u64,
}

/// Every document of the project snapshot with root tree `root`, in creation order.
pub fn documents(loader: &mut Loader, root: &Id) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    let name = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
    for ns in dirs(loader, root)? {
        for group in dirs(loader, &ns.1)? {
            for resource in dirs(loader, &group.1)? {
                let tree = loader.load_tree(&resource.1)?;
                for f in tree.nodes {
                    let file = name(&f.name);
                    let Some(obj) = file.strip_suffix(SUFFIX) else {
                        continue;
                    };
                    if f.kind != NodeKind::File {
                        continue;
                    }
                    out.push(Document {
                        path: ObjectPath {
                            namespace: ns.0.clone(),
                            group: group.0.clone(),
                            resource: resource.0.clone(),
                            name: obj.to_string(),
                        },
                        content: f.content,
                        size: f.size,
                    });
                }
            }
        }
    }
    out.sort_by_cached_key(|d| {
        (
            rank(&d.path.namespace, &d.path.group, &d.path.resource),
            d.path.clone(),
        )
    });
    Ok(out)
}

/// The subdirectories of a tree, by name.
fn dirs(loader: &mut Loader, id: &Id) -> Result<Vec<(String, Id)>> {
    Ok(loader
        .load_tree(id)?
        .nodes
        .into_iter()
        .filter(|n| n.kind == NodeKind::Dir)
        .filter_map(|n| Some((String::from_utf8_lossy(&n.name).into_owned(), n.subtree?)))
        .collect())
}

/// Namespace renames (`OLD=NEW`).
#[derive(Debug, Clone, Default)]
pub struct NamespaceMap(BTreeMap<String, String>);

impl NamespaceMap {
    /// Parse `OLD=NEW` pairs; NEW must be a valid namespace name.
    pub fn parse(pairs: &[String]) -> Result<Self> {
        let mut m = BTreeMap::new();
        for p in pairs {
            let (old, new) = p.split_once('=').ok_or_else(|| {
                Error::invalid(format!("--namespace-map {p}"), "expected OLD=NEW")
            })?;
            let label = !new.is_empty()
                && new.len() <= 63
                && new
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !new.starts_with('-')
                && !new.ends_with('-');
            if !label {
                return Err(Error::invalid(
                    format!("--namespace-map {p}"),
                    format!("{new:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"),
                ));
            }
            m.insert(old.to_string(), new.to_string());
        }
        Ok(NamespaceMap(m))
    }

    fn get<'a>(&'a self, ns: &'a str) -> &'a str {
        self.0.get(ns).map(String::as_str).unwrap_or(ns)
    }
}

/// Read, verify and decode `doc`, renamed by `map`; returns its new path and the object.
pub fn load(
    loader: &mut Loader,
    doc: &Document,
    map: &NamespaceMap,
) -> Result<(ObjectPath, Value)> {
    let mut bytes = Vec::with_capacity(doc.size as usize);
    for id in &doc.content {
        bytes.extend_from_slice(&loader.load(id)?);
    }
    if bytes.len() as u64 != doc.size {
        return Err(Error::invalid(
            doc.path.to_string(),
            format!("{} bytes restored, {} recorded", bytes.len(), doc.size),
        ));
    }
    let mut obj: Value =
        serde_saphyr::from_slice(&bytes).map_err(|e| Error::invalid(doc.path.to_string(), e))?;
    let mut path = doc.path.clone();
    if path.namespace != CLUSTER {
        let old = path.namespace.clone();
        let new = map.get(&old).to_string();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            if path.group == CORE && path.resource == "namespaces" {
                meta.insert("name".into(), new.clone().into());
                path.name = new.clone();
            } else {
                meta.insert("namespace".into(), new.clone().into());
            }
        }
        // Bindings to service accounts of the project follow it.
        if let Some(Value::Array(subjects)) = obj.get_mut("subjects") {
            for s in subjects {
                if s.get("namespace").and_then(Value::as_str) == Some(old.as_str()) {
                    s["namespace"] = new.clone().into();
                }
            }
        }
        path.namespace = new;
    }
    Ok((path, obj))
}

/// What `write_manifests` wrote.
#[derive(Debug, Default, Serialize)]
pub struct Written {
    pub files: u64,
    pub bytes: u64,
    pub kustomization: PathBuf,
}

/// Write every document below `target` as `NS/GROUP/RESOURCE/NAME.yaml`, and a
/// `kustomization.yaml` listing them in creation order (`kubectl apply -k TARGET`).
pub fn write_manifests(
    loader: &mut Loader,
    docs: &[Document],
    target: &Path,
    map: &NamespaceMap,
    overwrite: bool,
) -> Result<Written> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| Error::Io { path: p, source }
    };
    let mut out = Written::default();
    let mut listing = String::from(
        "# Written by cairn restore --layout manifests: objects in creation order.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for doc in docs {
        let (path, obj) = load(loader, doc, map)?;
        let rel = PathBuf::from(&path.namespace)
            .join(&path.group)
            .join(&path.resource)
            .join(format!("{}{SUFFIX}", path.name));
        let file = target.join(&rel);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let text = to_yaml(&obj).map_err(|e| Error::invalid(path.to_string(), e))?;
        write_file(&file, text.as_bytes(), overwrite).map_err(io(&file))?;
        listing.push_str(&format!("- {}\n", quote(&rel.display().to_string())));
        out.files += 1;
        out.bytes += text.len() as u64;
    }
    let k = target.join("kustomization.yaml");
    write_file(&k, listing.as_bytes(), overwrite).map_err(io(&k))?;
    out.kustomization = k;
    Ok(out)
}

/// A YAML scalar for a path: plain when safe, else single-quoted.
fn quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn write_file(path: &Path, bytes: &[u8], overwrite: bool) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(overwrite)
        .create_new(!overwrite)
        .truncate(overwrite)
        .open(path)?;
    f.write_all(bytes)
}

/// What applying one document did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "result", content = "message")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    Failed(String),
}

/// One applied document.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub object: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The URL of `obj` stored at `path`, and whether it is a CRD.
fn object_url(path: &ObjectPath, obj: &Value) -> Result<String> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid(path.to_string(), "no apiVersion"))?;
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    let base = base_path(&path.group, version);
    let cluster_scoped =
        path.namespace == CLUSTER || (path.group == CORE && path.resource == "namespaces");
    Ok(if cluster_scoped {
        format!("{base}/{}/{}", path.resource, path.name)
    } else {
        format!(
            "{base}/namespaces/{}/{}/{}",
            path.namespace, path.resource, path.name
        )
    })
}

/// Apply `docs` in order with server-side apply (field manager [`FIELD_MANAGER`], conflicts
/// forced: the snapshot is the intent), waiting for CRDs to be Established before the objects
/// after them. Nothing is ever deleted. `each` is told every outcome.
pub fn apply(
    kube: &Kube,
    loader: &mut Loader,
    docs: &[Document],
    map: &NamespaceMap,
    dry_run: bool,
    mut each: impl FnMut(&Applied),
) -> Result<Vec<Applied>> {
    let mut all = Vec::new();
    let mut crds: Vec<String> = Vec::new();
    for doc in docs {
        if !crds.is_empty() && doc.path.namespace != CLUSTER {
            for url in crds.drain(..) {
                if let Err(why) = wait_established(kube, &url) {
                    let a = Applied {
                        object: url,
                        outcome: Outcome::Failed(why),
                    };
                    each(&a);
                    all.push(a);
                }
            }
        }
        let (path, obj) = load(loader, doc, map)?;
        let outcome = match object_url(&path, &obj) {
            Ok(url) => {
                let o = apply_one(kube, &url, &obj, dry_run)?;
                if path.namespace == CLUSTER && !dry_run && !matches!(o, Outcome::Failed(_)) {
                    crds.push(url);
                }
                o
            }
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let a = Applied {
            object: path.to_string(),
            outcome,
        };
        each(&a);
        all.push(a);
    }
    Ok(all)
}

fn resource_version(v: &Value) -> Option<String> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from)
}

fn apply_one(kube: &Kube, url: &str, obj: &Value, dry_run: bool) -> Result<Outcome> {
    let before = kube.get(url)?;
    let existed = match before.status {
        s if s.is_success() => Some(before.json(url).ok().as_ref().and_then(resource_version)),
        _ => None,
    };
    let mut query = format!("{url}?fieldManager={FIELD_MANAGER}&force=true");
    if dry_run {
        query.push_str("&dryRun=All");
    }
    let body = serde_json::to_vec(obj).map_err(|e| Error::invalid(url, e))?;
    let a = kube.send(
        Method::PATCH,
        &query,
        Some(("application/apply-patch+yaml", body)),
    )?;
    if !a.status.is_success() {
        return Ok(Outcome::Failed(status_error("PATCH", url, &a).to_string()));
    }
    let after = a.json(url).ok().as_ref().and_then(resource_version);
    Ok(match existed {
        None => Outcome::Created,
        Some(rv) if rv.is_some() && rv == after => Outcome::Unchanged,
        Some(_) if dry_run => Outcome::Unchanged,
        Some(_) => Outcome::Configured,
    })
}

/// Wait until the CRD at `url` reports the Established condition.
fn wait_established(kube: &Kube, url: &str) -> std::result::Result<(), String> {
    let deadline = Instant::now() + CRD_WAIT;
    loop {
        match kube.get(url) {
            Ok(a) if a.status == StatusCode::OK => {
                let established = a.json(url).ok().is_some_and(|v| {
                    v.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|c| {
                            c.iter().any(|c| {
                                c.get("type").and_then(Value::as_str) == Some("Established")
                                    && c.get("status").and_then(Value::as_str) == Some("True")
                            })
                        })
                });
                if established {
                    return Ok(());
                }
            }
            Ok(a) => return Err(status_error("GET", url, &a).to_string()),
            Err(e) => return Err(e.to_string()),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not Established after {}s; its custom resources may fail",
                CRD_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_map_checks_names() {
        assert!(NamespaceMap::parse(&["a=b-2".into()]).is_ok());
        assert!(NamespaceMap::parse(&["a".into()]).is_err());
        assert!(NamespaceMap::parse(&["a=B".into()]).is_err());
        assert!(NamespaceMap::parse(&["a=../x".into()]).is_err());
    }
}
