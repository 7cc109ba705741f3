//! From a live object to a document that re-creates it: what the cluster assigned or
//! regenerates is dropped (README "Projects" lists each field and why).

use serde_json::{Map, Value};

/// Metadata the API server assigns: identity, versions, timestamps, field ownership.
/// `ownerReferences` name owners by uid, which a new cluster does not have: the garbage
/// collector would delete a restored object whose owner uid does not exist.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
];

/// Annotations that record the cluster's state rather than the user's intent.
/// `last-applied-configuration` is a second copy of the object as last applied by client-side
/// `kubectl apply`; cairn restores with server-side apply, which does not read it, and keeping
/// it would store every object twice.
const CLUSTER_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "pv.kubernetes.io/provisioned-by",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
    "openshift.io/sa.scc.mcs",
    "openshift.io/sa.scc.supplemental-groups",
    "openshift.io/sa.scc.uid-range",
];

/// Why an object is not exported, if it is not.
pub fn skip_reason(
    group: &str,
    resource: &str,
    obj: &Value,
    include_owned: bool,
) -> Option<&'static str> {
    match (group, resource) {
        ("", "events") | ("events.k8s.io", "events") => return Some("events"),
        ("", "endpoints") | ("discovery.k8s.io", "endpointslices") if !include_owned => {
            return Some("endpoints are derived from services")
        }
        ("", "secrets") if is_generated_secret(obj) => return Some("service-account token"),
        ("", "configmaps") if published_ca(obj) => {
            return Some("CA bundle the cluster publishes in every namespace")
        }
        _ => {}
    }
    let controlled = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        });
    (controlled && !include_owned).then_some("owned by a controller")
}

/// Service-account token secrets (and OpenShift's generated pull secrets for service
/// accounts): the cluster creates them for each service account, bound to its uid.
fn is_generated_secret(obj: &Value) -> bool {
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or_default();
    let for_sa = obj
        .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
        .is_some();
    ty == "kubernetes.io/service-account-token"
        || (for_sa
            && matches!(
                ty,
                "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson"
            ))
}

/// `kube-root-ca.crt` and OpenShift's `openshift-service-ca.crt`: controllers write them into
/// every namespace, with the new cluster's CAs.
fn published_ca(obj: &Value) -> bool {
    matches!(
        obj.pointer("/metadata/name").and_then(Value::as_str),
        Some("kube-root-ca.crt" | "openshift-service-ca.crt")
    )
}

/// The creation time of `obj` in nanoseconds since the epoch (0 if absent or unreadable).
pub fn created_ns(obj: &Value) -> i64 {
    obj.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(0)
}

/// Strip what the cluster assigned from `obj` of `group`/`resource`, with `api_version` and
/// `kind` set (list items may omit them).
pub fn normalize(group: &str, resource: &str, api_version: &str, kind: &str, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    o.insert("apiVersion".into(), api_version.into());
    o.insert("kind".into(), kind.into());
    o.remove("status");
    if let Some(Value::Object(meta)) = o.get_mut("metadata") {
        for k in SERVER_METADATA {
            meta.remove(*k);
        }
        if let Some(Value::Object(ann)) = meta.get_mut("annotations") {
            for k in CLUSTER_ANNOTATIONS {
                ann.remove(*k);
            }
        }
        drop_empty(meta, "annotations");
        drop_empty(meta, "labels");
        drop_empty(meta, "finalizers");
    }
    match (group, resource) {
        ("", "services") => {
            if let Some(Value::Object(spec)) = o.get_mut("spec") {
                // A headless service's `None` is intent; any address is the cluster's choice.
                if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                    spec.remove("clusterIP");
                    spec.remove("clusterIPs");
                }
            }
        }
        ("", "persistentvolumeclaims") => {
            // The bound volume is the old cluster's; the new one provisions its own.
            if let Some(Value::Object(spec)) = o.get_mut("spec") {
                spec.remove("volumeName");
            }
        }
        ("", "namespaces") => {
            o.remove("spec");
        }
        ("route.openshift.io", "routes") => {
            // A host the router generated names the old cluster's apps domain; the new
            // cluster generates its own.
            let generated = o
                .get("metadata")
                .and_then(|m| m.pointer("/annotations/openshift.io~1host.generated"))
                .and_then(Value::as_str)
                == Some("true");
            if generated {
                if let Some(Value::Object(spec)) = o.get_mut("spec") {
                    spec.remove("host");
                }
            }
        }
        _ => {}
    }
}

fn drop_empty(m: &mut Map<String, Value>, key: &str) {
    let empty = match m.get(key) {
        Some(Value::Object(x)) => x.is_empty(),
        Some(Value::Array(x)) => x.is_empty(),
        Some(Value::Null) => true,
        _ => false,
    };
    if empty {
        m.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_what_the_cluster_assigned() {
        let mut svc = json!({
            "metadata": {"name": "web", "namespace": "a", "uid": "u", "resourceVersion": "9",
                "creationTimestamp": "2024-01-01T00:00:00Z", "managedFields": [],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"clusterIP": "172.30.0.5", "clusterIPs": ["172.30.0.5"], "ports": []},
            "status": {"loadBalancer": {}},
        });
        normalize("", "services", "v1", "Service", &mut svc);
        assert_eq!(
            svc,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "a"}, "spec": {"ports": []}})
        );
        let mut headless = json!({"metadata": {}, "spec": {"clusterIP": "None"}});
        normalize("", "services", "v1", "Service", &mut headless);
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }

    #[test]
    fn skips_generated_objects() {
        let owned = json!({"metadata": {"ownerReferences": [{"controller": true}]}});
        assert!(skip_reason("apps", "replicasets", &owned, false).is_some());
        assert!(skip_reason("apps", "replicasets", &owned, true).is_none());
        let token = json!({"type": "kubernetes.io/service-account-token"});
        assert!(skip_reason("", "secrets", &token, true).is_some());
        assert!(skip_reason("", "secrets", &json!({"type": "Opaque"}), false).is_none());
        assert!(skip_reason("", "events", &json!({}), true).is_some());
    }
}
