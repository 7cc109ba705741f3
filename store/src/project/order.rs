//! The order in which documents re-create a project: what others refer to first.

use super::layout::{CLUSTER, CORE};

/// Kinds of objects, in the order they are created (Velero's priorities, with OpenShift's
/// types): namespaces, CRDs, service accounts, secrets, config maps, claims, RBAC, services,
/// image streams and workloads, routes and ingresses, then everything else.
const PRIORITIES: &[(&str, &[&str])] = &[
    (CORE, &["namespaces"]),
    ("apiextensions.k8s.io", &["customresourcedefinitions"]),
    (CORE, &["serviceaccounts"]),
    (CORE, &["secrets"]),
    (CORE, &["configmaps"]),
    (CORE, &["persistentvolumeclaims"]),
    ("rbac.authorization.k8s.io", &["roles", "rolebindings"]),
    (CORE, &["services"]),
    ("image.openshift.io", &["imagestreams"]),
    (
        "apps",
        &["deployments", "statefulsets", "daemonsets", "replicasets"],
    ),
    ("apps.openshift.io", &["deploymentconfigs"]),
    ("build.openshift.io", &["buildconfigs"]),
    ("batch", &["cronjobs", "jobs"]),
    (CORE, &["replicationcontrollers", "pods"]),
    ("route.openshift.io", &["routes"]),
    ("networking.k8s.io", &["ingresses"]),
];

/// The rank of a document of `group`/`resource` (lower is created first).
pub fn rank(namespace: &str, group: &str, resource: &str) -> usize {
    if namespace == CLUSTER {
        return 8;
    }
    PRIORITIES
        .iter()
        .enumerate()
        .find_map(|(i, (g, rs))| {
            let j = rs.iter().position(|r| *r == resource)?;
            (*g == group).then_some(i * 8 + j)
        })
        .unwrap_or(PRIORITIES.len() * 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_before_users() {
        let ns = rank("a", CORE, "namespaces");
        let crd = rank(CLUSTER, "apiextensions.k8s.io", "customresourcedefinitions");
        let cm = rank("a", CORE, "configmaps");
        let deploy = rank("a", "apps", "deployments");
        let route = rank("a", "route.openshift.io", "routes");
        let custom = rank("a", "example.com", "widgets");
        assert!(
            rank("a", "rbac.authorization.k8s.io", "roles")
                < rank("a", "rbac.authorization.k8s.io", "rolebindings")
        );
        assert!(ns < crd && crd < cm && cm < deploy && deploy < route && route < custom);
    }
}
