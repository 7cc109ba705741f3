//! How a project snapshot lays out its files: `/NS/GROUP/RESOURCE/NAME.yaml`, one YAML
//! document per object with keys in a fixed order, so an unchanged object is the same bytes
//! (and the same blob) in every snapshot.

use crate::saver::Saver;
use cairn_format::chunker::ChunkPolicy;
use cairn_format::tree::{valid_name, Node, NodeKind, Tree};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// Directory of the core API group (`v1`). API groups are DNS subdomains, which have no `_`.
pub const CORE: &str = "_core";
/// Top-level directory of cluster-scoped objects kept with a project (CRDs). Namespaces are
/// DNS labels, which have no `_`.
pub const CLUSTER: &str = "_cluster";
/// File name suffix of every document.
pub const SUFFIX: &str = ".yaml";

/// Where one object is stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectPath {
    /// Namespace, or [`CLUSTER`].
    pub namespace: String,
    /// API group, or [`CORE`].
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Object name.
    pub name: String,
}

impl std::fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}{SUFFIX}",
            self.namespace, self.group, self.resource, self.name
        )
    }
}

/// `v` as a YAML document: `apiVersion`, `kind`, `metadata` first, `name` and `namespace`
/// first in metadata, every other key sorted.
pub fn to_yaml(v: &Value) -> Result<String, String> {
    serde_saphyr::to_string(&Ordered(v, 0)).map_err(|e| e.to_string())
}

/// A JSON value serialised with keys in the document order; the depth says which keys lead.
struct Ordered<'a>(&'a Value, u8);

fn rank(depth: u8, key: &str) -> u8 {
    match (depth, key) {
        (0, "apiVersion") | (1, "name") => 0,
        (0, "kind") | (1, "namespace") => 1,
        (0, "metadata") => 2,
        _ => 3,
    }
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by(|a, b| (rank(self.1, a), *a).cmp(&(rank(self.1, b), *b)));
                let mut out = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    // Only the top level's `metadata` gets its leading keys.
                    let depth = if self.1 == 0 && k == "metadata" { 1 } else { 2 };
                    out.serialize_entry(k, &Ordered(&m[k], depth))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    out.serialize_element(&Ordered(i, 2))?;
                }
                out.end()
            }
            other => other.serialize(s),
        }
    }
}

/// Files by name, in one resource directory.
type Files = BTreeMap<String, Node>;

/// The files of a project snapshot being written: directories are kept as nodes (names and
/// blob ids, never object contents) until [`ProjectTree::save`] writes their tree blobs.
#[derive(Default)]
pub struct ProjectTree {
    /// Namespace → group → resource → files.
    dirs: BTreeMap<String, BTreeMap<String, BTreeMap<String, Files>>>,
    /// Documents stored.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl ProjectTree {
    /// Store `doc` as the file of `path`. The file's mtime is `mtime_ns` (the object's
    /// creation time, which does not change while the object lives), so an unchanged object
    /// keeps an identical tree entry. A second document for the same path replaces the first.
    pub fn add(
        &mut self,
        saver: &mut Saver,
        policy: ChunkPolicy,
        path: &ObjectPath,
        doc: &[u8],
        mtime_ns: i64,
    ) -> Result<(), super::Error> {
        let file = format!("{}{SUFFIX}", path.name);
        for part in [&path.namespace, &path.group, &path.resource, &file] {
            if !valid_name(part.as_bytes()) {
                return Err(super::Error::invalid(
                    path.to_string(),
                    "the name cannot be a file name",
                ));
            }
        }
        let (ids, size) = saver
            .save_reader(doc, policy, |_| {})?
            .map_err(|e| super::Error::invalid(path.to_string(), e))?;
        let mut node = Node::new(file.clone().into_bytes(), NodeKind::File);
        node.mode = 0o600;
        node.mtime_ns = mtime_ns;
        node.ctime_ns = mtime_ns;
        node.size = size;
        node.content = ids;
        let files = self
            .dirs
            .entry(path.namespace.clone())
            .or_default()
            .entry(path.group.clone())
            .or_default()
            .entry(path.resource.clone())
            .or_default();
        if let Some(old) = files.insert(file, node) {
            self.files -= 1;
            self.bytes -= old.size;
        }
        self.files += 1;
        self.bytes += size;
        Ok(())
    }

    /// Directories created so far (namespaces, groups, resources).
    pub fn dirs(&self) -> u64 {
        self.dirs
            .values()
            .map(|g| 1 + g.values().map(|r| 1 + r.len() as u64).sum::<u64>())
            .sum()
    }

    /// Write every directory's tree blob; returns the root tree.
    pub fn save(self, saver: &mut Saver) -> Result<Tree, super::Error> {
        let dir = |name: &str, nodes: Vec<Node>, saver: &mut Saver| {
            let mut tree = Tree { nodes };
            let id = saver.save_tree(&mut tree)?;
            let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
            node.mode = 0o700;
            node.subtree = Some(id);
            Ok::<_, crate::Error>(node)
        };
        let mut root = Vec::new();
        for (ns, groups) in self.dirs {
            let mut gnodes = Vec::new();
            for (group, resources) in groups {
                let mut rnodes = Vec::new();
                for (resource, files) in resources {
                    rnodes.push(dir(&resource, files.into_values().collect(), saver)?);
                }
                gnodes.push(dir(&group, rnodes, saver)?);
            }
            root.push(dir(&ns, gnodes, saver)?);
        }
        Ok(Tree { nodes: root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_lead_with_type_and_name() {
        let v = serde_json::json!({
            "spec": {"b": 1, "a": [{"z": 1, "name": "x"}]},
            "metadata": {"namespace": "ns1", "labels": {"b": "1", "a": "2"}, "name": "cm"},
            "kind": "ConfigMap",
            "apiVersion": "v1",
        });
        let y = to_yaml(&v).unwrap();
        let keys: Vec<&str> = y
            .lines()
            .filter(|l| !l.starts_with(' '))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
        let meta = y.find("  name: cm").unwrap();
        assert!(meta < y.find("  namespace: ns1").unwrap());
        assert!(y.find("  namespace: ns1").unwrap() < y.find("  labels:").unwrap());
        // Nested maps are sorted; a nested `name` does not lead.
        assert!(y.find("name: x").unwrap() < y.find("z: 1").unwrap());
        let back: Value = serde_saphyr::from_str(&y).unwrap();
        assert_eq!(back, v);
    }
}
