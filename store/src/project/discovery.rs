//! Which resource types a namespace holds: every namespaced type the server can list, at its
//! group's preferred version, found through the discovery endpoints (`/api`, `/apis`).

use super::client::{status_error, Kube};
use super::layout::CORE;
use super::{dns_name, Error, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIResourceList, APIVersions};

/// One listable resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// The group's preferred version.
    pub version: String,
    /// Plural resource name (`deployments`).
    pub resource: String,
    /// Kind (`Deployment`).
    pub kind: String,
}

impl ResourceType {
    /// `/api/v1` or `/apis/GROUP/VERSION`.
    pub fn base(&self) -> String {
        base_path(&self.group, &self.version)
    }

    /// The directory name of the group in a snapshot.
    pub fn group_dir(&self) -> &str {
        if self.group.is_empty() {
            CORE
        } else {
            &self.group
        }
    }

    /// `group/resource`, as messages name a type.
    pub fn display(&self) -> String {
        format!("{}/{}", self.group_dir(), self.resource)
    }
}

/// `/api/v1` or `/apis/GROUP/VERSION`.
pub fn base_path(group: &str, version: &str) -> String {
    if group.is_empty() || group == CORE {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// What discovery found.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The listable namespaced types, in the order the server named them.
    pub types: Vec<ResourceType>,
    /// Groups whose resource list could not be read, with the reason.
    pub failed: Vec<(String, String)>,
}

fn decode<T: serde::de::DeserializeOwned>(kube: &Kube, path: &str) -> Result<T> {
    let a = kube.get(path)?;
    if !a.status.is_success() {
        return Err(status_error("GET", path, &a));
    }
    serde_json::from_slice(&a.body).map_err(|e| Error::invalid(path, e))
}

/// Discover every namespaced type that supports `list` and `get`. A group version whose
/// resource list cannot be read (an aggregated API that is down) is reported, not fatal.
pub fn discover(kube: &Kube) -> Result<Discovered> {
    let mut versions = Vec::new();
    let core: APIVersions = decode(kube, "/api")?;
    if let Some(v) = core.versions.first() {
        versions.push((String::new(), v.clone()));
    }
    let groups: APIGroupList = decode(kube, "/apis")?;
    for g in groups.groups {
        let preferred = g
            .preferred_version
            .map(|p| p.version)
            .or_else(|| g.versions.first().map(|v| v.version.clone()));
        if let Some(v) = preferred {
            versions.push((g.name, v));
        }
    }
    let mut out = Discovered::default();
    for (group, version) in versions {
        let path = base_path(&group, &version);
        // Groups are DNS subdomains and versions DNS labels: anything else (`_core`, `..`) is
        // a broken or hostile server, and would collide with the snapshot's own names.
        if !(group.is_empty() || dns_name(&group, 253, true)) || !dns_name(&version, 63, false) {
            out.failed.push((
                format!("group {group:?} version {version:?}"),
                "not a valid API group and version name (a broken or hostile API server)".into(),
            ));
            continue;
        }
        let list: APIResourceList = match decode(kube, &path) {
            Ok(l) => l,
            Err(e) => {
                out.failed.push((path, e.to_string()));
                continue;
            }
        };
        for r in list.resources {
            let verbs = |v: &str| r.verbs.iter().any(|x| x == v);
            if r.name.contains('/') || !r.namespaced || !verbs("list") || !verbs("get") {
                continue;
            }
            if !dns_name(&r.name, 253, true) {
                out.failed.push((
                    format!("{path} resource {:?}", r.name),
                    "not a valid resource name (a broken or hostile API server)".into(),
                ));
                continue;
            }
            out.types.push(ResourceType {
                group: group.clone(),
                version: version.clone(),
                resource: r.name,
                kind: r.kind,
            });
        }
    }
    Ok(out)
}
