//! Restore a project snapshot: its documents in creation order, renamed by a namespace map,
//! written as a kustomization or applied to a cluster with server-side apply.

use super::client::{status_error, Kube};
use super::discovery::base_path;
use super::layout::{to_yaml, ObjectPath, CLUSTER, CORE, SUFFIX};
use super::order::rank;
use super::{url_encode, Error, Result};
use crate::loader::Loader;
use cairn_format::tree::NodeKind;
use cairn_format::Id;
use http::{Method, StatusCode};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Write;
use std::ops::ControlFlow;
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
    /// Parse `OLD=NEW` pairs: both namespace names, each OLD once, no two onto one NEW.
    pub fn parse(pairs: &[String]) -> Result<Self> {
        let mut m = BTreeMap::new();
        for p in pairs {
            let what = || format!("--namespace-map {p}");
            let (old, new) = p
                .split_once('=')
                .ok_or_else(|| Error::invalid(what(), "expected OLD=NEW"))?;
            for name in [old, new] {
                if !super::is_namespace(name) {
                    return Err(Error::invalid(
                        what(),
                        format!("{name:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"),
                    ));
                }
            }
            if m.insert(old.to_string(), new.to_string()).is_some() {
                return Err(Error::invalid(what(), format!("{old} is mapped twice")));
            }
        }
        let mut onto = BTreeSet::new();
        for new in m.values() {
            if !onto.insert(new) {
                return Err(Error::invalid(
                    format!("--namespace-map …={new}"),
                    "two namespaces are mapped onto it",
                ));
            }
        }
        Ok(NamespaceMap(m))
    }

    /// Refuse a map that names a namespace the snapshot does not hold (a typo would apply
    /// the objects over the live project), or maps one onto a namespace the snapshot also
    /// restores as it is (two projects' objects would be merged).
    pub fn check(&self, docs: &[Document]) -> Result<()> {
        let held: BTreeSet<&str> = docs
            .iter()
            .map(|d| d.path.namespace.as_str())
            .filter(|ns| *ns != CLUSTER)
            .collect();
        let list = || held.iter().copied().collect::<Vec<_>>().join(", ");
        for (old, new) in &self.0 {
            if !held.contains(old.as_str()) {
                return Err(Error::invalid(
                    format!("--namespace-map {old}={new}"),
                    format!(
                        "the snapshot holds no namespace {old} (it holds: {})",
                        list()
                    ),
                ));
            }
            if held.contains(new.as_str()) && !self.0.contains_key(new) {
                return Err(Error::invalid(
                    format!("--namespace-map {old}={new}"),
                    format!("the snapshot also restores namespace {new}: the two would be merged; map {new} elsewhere too, or pick another name"),
                ));
            }
        }
        Ok(())
    }

    fn get<'a>(&'a self, ns: &'a str) -> &'a str {
        self.0.get(ns).map(String::as_str).unwrap_or(ns)
    }

    /// Where the document stored at `path` is restored.
    fn renamed(&self, path: &ObjectPath) -> ObjectPath {
        let mut path = path.clone();
        if path.namespace != CLUSTER {
            let new = self.get(&path.namespace).to_string();
            if path.group == CORE && path.resource == "namespaces" {
                path.name = new.clone();
            }
            path.namespace = new;
        }
        path
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
    let path = map.renamed(&doc.path);
    if path.namespace != CLUSTER {
        let (old, new) = (doc.path.namespace.as_str(), path.namespace.as_str());
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            if path.group == CORE && path.resource == "namespaces" {
                meta.insert("name".into(), new.into());
                // Kubernetes labels every namespace with its own name.
                if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
                    if labels.contains_key(NAME_LABEL) {
                        labels.insert(NAME_LABEL.into(), new.into());
                    }
                }
            } else {
                meta.insert("namespace".into(), new.into());
            }
        }
        if old != new {
            rename_subjects(&mut obj, old, new);
        }
    }
    Ok((path, obj))
}

/// The label Kubernetes puts on every namespace, holding its name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Bindings to the project's service accounts follow it: subjects of kind ServiceAccount in
/// namespace `old`, and the User and Group names Kubernetes gives them
/// (`system:serviceaccount:OLD:NAME`, `system:serviceaccounts:OLD`).
fn rename_subjects(obj: &mut Value, old: &str, new: &str) {
    let Some(Value::Array(subjects)) = obj.get_mut("subjects") else {
        return;
    };
    let (user, group) = (
        format!("system:serviceaccount:{old}:"),
        format!("system:serviceaccounts:{old}"),
    );
    for s in subjects {
        if s.get("namespace").and_then(Value::as_str) == Some(old) {
            s["namespace"] = new.into();
        }
        let kind = s.get("kind").and_then(Value::as_str).unwrap_or_default();
        let Some(name) = s.get("name").and_then(Value::as_str) else {
            continue;
        };
        let renamed = match kind {
            "User" => name
                .strip_prefix(&user)
                .map(|sa| format!("system:serviceaccount:{new}:{sa}")),
            "Group" if name == group => Some(format!("system:serviceaccounts:{new}")),
            _ => None,
        };
        if let Some(r) = renamed {
            s["name"] = r.into();
        }
    }
}

/// What `write_manifests` wrote.
#[derive(Debug, Default, Serialize)]
pub struct Written {
    pub files: u64,
    pub bytes: u64,
    pub kustomization: PathBuf,
}

/// Most bytes of a file name on Linux file systems.
const NAME_MAX: usize = 255;

/// The file name of object `name`: `NAME.yaml`, or, when that is longer than a file name may
/// be (object names reach 253 characters), the name's first 200 bytes, `-`, 16 hex digits of
/// its hash and `.yaml` (the kustomization lists it; the object inside keeps its name).
fn file_name(name: &str) -> String {
    if name.len() + SUFFIX.len() <= NAME_MAX {
        return format!("{name}{SUFFIX}");
    }
    let mut cut = 200;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = blake3::hash(name.as_bytes()).to_hex();
    format!("{}-{}{SUFFIX}", &name[..cut], &hash[..16])
}

/// Where `path` is written below the target.
fn relative(path: &ObjectPath) -> PathBuf {
    PathBuf::from(&path.namespace)
        .join(&path.group)
        .join(&path.resource)
        .join(file_name(&path.name))
}

/// Write every document below `target` as `NS/GROUP/RESOURCE/NAME.yaml`, and a
/// `kustomization.yaml` listing them in creation order (`kubectl apply -k TARGET`). Nothing
/// is written when a file is in the way (unless `overwrite`). Files are created relative to
/// directory descriptors, never through a symlink, readable by their owner only (a project
/// holds Secrets): files 0600, directories 0700.
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
    // Preflight: every file's place, and what is in the way (a symlink or a file where a
    // directory goes is refused whatever `overwrite` says).
    let mut places: BTreeSet<PathBuf> = BTreeSet::new();
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut in_way = Vec::new();
    let kustomization = PathBuf::from("kustomization.yaml");
    let rels = docs.iter().map(|d| relative(&map.renamed(&d.path)));
    for rel in rels.chain([kustomization.clone()]) {
        for dir in rel
            .ancestors()
            .skip(1)
            .filter(|d| !d.as_os_str().is_empty())
        {
            if !dirs.insert(dir.to_path_buf()) {
                break;
            }
            match std::fs::symlink_metadata(target.join(dir)) {
                Ok(m) if !m.is_dir() => {
                    return Err(Error::invalid(
                        target.join(dir).display().to_string(),
                        "is not a directory (a symlink or a file is in the way); nothing was written (restore into an empty directory)",
                    ))
                }
                _ => {}
            }
        }
        if !places.insert(rel.clone()) {
            return Err(Error::invalid(
                target.join(&rel).display().to_string(),
                "two objects of the snapshot would be written here",
            ));
        }
        match std::fs::symlink_metadata(target.join(&rel)) {
            Ok(m) if !m.is_file() => {
                return Err(Error::invalid(
                    target.join(&rel).display().to_string(),
                    "is not a regular file (a symlink, a directory or a device is in the way); nothing was written (restore into an empty directory)",
                ))
            }
            Ok(_) if !overwrite => in_way.push(rel.display().to_string()),
            _ => {}
        }
    }
    if let Some(both) = places.iter().find(|p| dirs.contains(*p)) {
        return Err(Error::invalid(
            target.join(both).display().to_string(),
            "the snapshot has both a file and a directory here (a damaged or planted snapshot); nothing was written",
        ));
    }
    if !in_way.is_empty() {
        let more = in_way.len().saturating_sub(3);
        in_way.truncate(3);
        return Err(Error::invalid(
            target.display().to_string(),
            format!(
                "{}{} already exist; nothing was written (use --overwrite, or restore into an empty directory)",
                in_way.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ),
        ));
    }
    std::fs::create_dir_all(target).map_err(io(target))?;
    let root = rfs::open(
        target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(target)(e.into()))?;
    let mut out = Written::default();
    let mut listing = String::from(
        "# Written by cairn restore --layout manifests: objects in creation order.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for doc in docs {
        let (path, obj) = load(loader, doc, map)?;
        let rel = relative(&path);
        let text = to_yaml(&obj).map_err(|e| Error::invalid(path.to_string(), e))?;
        write_below(&root, &rel, text.as_bytes(), overwrite).map_err(io(&target.join(&rel)))?;
        listing.push_str(&format!("- {}\n", quote(&rel.display().to_string())));
        out.files += 1;
        out.bytes += text.len() as u64;
    }
    write_below(&root, &kustomization, listing.as_bytes(), overwrite)
        .map_err(io(&target.join(&kustomization)))?;
    out.kustomization = target.join(kustomization);
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

/// Write `bytes` as the file `rel` below the directory `root`, creating its directories
/// (0700); never through a symlink. The file is created (0600), or replaced with `overwrite`.
fn write_below(root: &OwnedFd, rel: &Path, bytes: &[u8], overwrite: bool) -> std::io::Result<()> {
    let symlink = || {
        std::io::Error::other("a symlink is in the way; refusing to write through it (restore into an empty directory)")
    };
    let mut parts: Vec<&OsStr> = rel.iter().collect();
    let name = parts
        .pop()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let mut dir: Option<OwnedFd> = None;
    for part in parts {
        let parent = dir.as_ref().unwrap_or(root).as_fd();
        match rfs::mkdirat(parent, part, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        dir = Some(match rfs::openat(parent, part, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOTDIR) => return Err(symlink()),
            Err(e) => return Err(e.into()),
        });
    }
    let parent = dir.as_ref().unwrap_or(root).as_fd();
    let create = if overwrite {
        OFlags::CREATE | OFlags::TRUNC
    } else {
        OFlags::CREATE | OFlags::EXCL
    };
    // Non-blocking: a FIFO put in the way since the preflight must not hang the restore.
    let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | create;
    let fd = match rfs::openat(parent, name, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(symlink()),
        Err(e) => return Err(e.into()),
    };
    if !rfs::FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode).is_file() {
        return Err(std::io::Error::other(
            "not a regular file; refusing to write to it (restore into an empty directory)",
        ));
    }
    // A file replaced with --overwrite keeps no wider mode than a new one.
    rfs::fchmod(&fd, Mode::from_raw_mode(0o600))?;
    rfs::fcntl_setfl(&fd, OFlags::empty())?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    f.sync_all()
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

/// The URL of `obj` stored at `path`.
fn object_url(path: &ObjectPath, obj: &Value) -> Result<String> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid(path.to_string(), "no apiVersion"))?;
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    let base = base_path(&path.group, version);
    let cluster_scoped =
        path.namespace == CLUSTER || (path.group == CORE && path.resource == "namespaces");
    let (resource, name) = (url_encode(&path.resource), url_encode(&path.name));
    Ok(if cluster_scoped {
        format!("{base}/{resource}/{name}")
    } else {
        let ns = url_encode(&path.namespace);
        format!("{base}/namespaces/{ns}/{resource}/{name}")
    })
}

/// Apply `docs` in order with server-side apply (field manager [`FIELD_MANAGER`], conflicts
/// forced: the snapshot is the intent), waiting for CRDs to be Established before the objects
/// after them. Nothing is ever deleted. `each` is told every outcome; when it answers
/// `Break`, nothing more is applied.
pub fn apply(
    kube: &Kube,
    loader: &mut Loader,
    docs: &[Document],
    map: &NamespaceMap,
    dry_run: bool,
    mut each: impl FnMut(&Applied) -> ControlFlow<()>,
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
                    let flow = each(&a);
                    all.push(a);
                    if flow.is_break() {
                        return Ok(all);
                    }
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
        let flow = each(&a);
        all.push(a);
        if flow.is_break() {
            break;
        }
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
        s if s.is_success() => Some(before.json(url).ok()),
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
    let after = a.json(url).ok();
    Ok(match existed {
        None => Outcome::Created,
        // A dry run stores nothing, so its answer keeps the old resourceVersion: the object
        // it would store is compared with the one stored.
        Some(Some(old)) if dry_run => match after {
            Some(new) if same_object(&old, &new) => Outcome::Unchanged,
            _ => Outcome::Configured,
        },
        Some(old) => {
            let rv = old.as_ref().and_then(resource_version);
            match rv {
                Some(rv) if Some(&rv) == after.as_ref().and_then(resource_version).as_ref() => {
                    Outcome::Unchanged
                }
                _ => Outcome::Configured,
            }
        }
    })
}

/// Whether two answers for one object hold the same object, the fields a write bumps aside.
fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("generation");
        }
        v
    };
    strip(a) == strip(b)
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
        assert!(NamespaceMap::parse(&["=x".into()]).is_err());
        assert!(NamespaceMap::parse(&["a=x".into(), "a=y".into()]).is_err());
        assert!(NamespaceMap::parse(&["a=x".into(), "b=x".into()]).is_err());
    }

    fn doc(ns: &str) -> Document {
        Document {
            path: ObjectPath {
                namespace: ns.into(),
                group: CORE.into(),
                resource: "configmaps".into(),
                name: "c".into(),
            },
            content: Vec::new(),
            size: 0,
        }
    }

    #[test]
    fn a_map_must_name_the_snapshots_namespaces_and_not_merge_two() {
        let docs = [doc("shop"), doc("pay"), doc(CLUSTER)];
        let map = |p: &[&str]| {
            NamespaceMap::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert!(map(&["shop=shop-dr"]).check(&docs).is_ok());
        let typo = map(&["shpo=shop-dr"]).check(&docs).unwrap_err().to_string();
        assert!(
            typo.contains("holds no namespace shpo (it holds: pay, shop)"),
            "{typo}"
        );
        assert!(map(&["shop=pay"]).check(&docs).is_err(), "merged into pay");
        assert!(
            map(&["shop=pay", "pay=shop"]).check(&docs).is_ok(),
            "swapped"
        );
    }

    #[test]
    fn service_account_users_and_groups_follow_the_namespace() {
        let mut obj = serde_json::json!({"subjects": [
            {"kind": "ServiceAccount", "name": "builder", "namespace": "proj"},
            {"kind": "User", "name": "system:serviceaccount:proj:builder"},
            {"kind": "Group", "name": "system:serviceaccounts:proj"},
            {"kind": "Group", "name": "system:serviceaccounts:project"},
            {"kind": "User", "name": "alice"},
        ]});
        rename_subjects(&mut obj, "proj", "proj2");
        let names: Vec<&str> = obj["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "builder",
                "system:serviceaccount:proj2:builder",
                "system:serviceaccounts:proj2",
                "system:serviceaccounts:project",
                "alice"
            ]
        );
        assert_eq!(obj["subjects"][0]["namespace"], "proj2");
    }

    #[test]
    fn files_are_never_written_through_a_symlink() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let (target, outside) = (dir.path().join("t"), dir.path().join("outside"));
        std::fs::create_dir_all(target.join("ns")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let root = rfs::open(&target, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        // A symlink where a directory goes, and one where the file goes (with overwrite).
        symlink(&outside, target.join("ns/_core")).unwrap();
        let e = write_below(&root, Path::new("ns/_core/x.yaml"), b"a", false).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        symlink(outside.join("f"), target.join("ns/f.yaml")).unwrap();
        let e = write_below(&root, Path::new("ns/f.yaml"), b"a", true).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A file there before, readable by all: replaced, and left readable by its owner only.
        std::fs::write(target.join("ns/old.yaml"), b"old").unwrap();
        std::fs::set_permissions(
            target.join("ns/old.yaml"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        write_below(&root, Path::new("ns/old.yaml"), b"new", true).unwrap();
        let m = std::fs::metadata(target.join("ns/old.yaml")).unwrap();
        assert_eq!((m.permissions().mode() & 0o777, m.len()), (0o600, 3));
        // A FIFO: refused, not waited on.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            target.join("ns/fifo.yaml"),
            rfs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(write_below(&root, Path::new("ns/fifo.yaml"), b"a", true).is_err());
    }

    #[test]
    fn names_too_long_for_a_file_name_are_shortened() {
        let long = "a".repeat(253);
        let f = file_name(&long);
        assert!(f.len() <= NAME_MAX && f.ends_with(SUFFIX), "{f}");
        assert_ne!(f, file_name(&format!("{}b", "a".repeat(252))));
        assert_eq!(file_name("web"), "web.yaml");
    }
}
