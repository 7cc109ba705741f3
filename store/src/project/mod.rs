//! Project exports: every namespaced object of a namespace, read live from the Kubernetes API,
//! normalised for re-creation, stored one YAML document per file, and restored as a
//! kustomization or with server-side apply.
//!
//! [`client`] talks to the API server (credentials, retries), [`discovery`] finds every
//! listable namespaced type, [`normalize`] turns a live object into a re-creatable document,
//! [`export`] lists objects page by page into a [`layout::ProjectTree`] of files, [`order`]
//! sorts documents for re-creation and [`restore`] writes or applies them.
//!
//! Snapshot layout (SPEC §10.1): `/NS/GROUP/RESOURCE/NAME.yaml`, the core group spelled
//! [`layout::CORE`] and cluster-scoped definitions (CRDs) under `/`[`layout::CLUSTER`]; neither
//! can be a namespace or API group name, which are DNS names without underscores.

pub mod client;
pub mod discovery;
pub mod export;
pub mod layout;
pub mod normalize;
pub mod order;
pub mod restore;

pub use client::{Connection, Kube};

/// What can go wrong talking to a cluster or handling its objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable cluster credentials.
    #[error("cannot connect to Kubernetes: {0}")]
    Config(String),
    /// The request did not get an answer (after retries).
    #[error("{method} {server}{path}: {why} (attempts: {attempts}); check the kubeconfig's server and certificate authority, and that the API server is reachable from here")]
    Transport {
        method: String,
        server: String,
        path: String,
        attempts: u32,
        why: String,
    },
    /// The server answered with an error status.
    #[error("{method} {path}: the server answered {status}: {message}")]
    Status {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    /// An answer larger than the client reads.
    #[error("{method} {path}: the answer is larger than {} MiB, or would take more than {} MiB parsed (a broken or hostile API server, or a page of very large objects: try a smaller --page-size)", client::MAX_ANSWER >> 20, client::MAX_PARSED >> 20)]
    TooLarge { method: String, path: String },
    /// A document or answer that cannot be used.
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
    /// Writing a restored file.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The repository.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

impl Error {
    pub(crate) fn invalid(what: impl Into<String>, why: impl std::fmt::Display) -> Self {
        Error::Invalid {
            what: what.into(),
            why: why.to_string(),
        }
    }
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `name` can be a namespace's: a DNS label (lower-case letters, digits and `-`, at
/// most 63, starting and ending with a letter or digit).
pub fn is_namespace(name: &str) -> bool {
    dns_name(name, 63, false)
}

/// Lower-case letters, digits and `-` (and `.` between labels when `dots`), at most `max`
/// bytes, starting and ending with a letter or digit.
pub(crate) fn dns_name(s: &str, max: usize, dots: bool) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    s.len() <= max
        && edge(s.as_bytes().first())
        && edge(s.as_bytes().last())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
        })
        && !s.contains("..")
}

/// What a URL path segment or query value may hold as it is: RFC 3986's unreserved
/// characters. Everything else (`#`, `?`, spaces: RBAC names may hold them) is
/// percent-encoded.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one URL path segment or query value.
pub(crate) fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::{dns_name, is_namespace, url_encode};

    #[test]
    fn group_and_resource_names_are_dns_names() {
        assert!(dns_name("apps.openshift.io", 253, true));
        assert!(dns_name("v1beta1", 63, false));
        for bad in ["_core", "", "a..b", ".a", "a-", "A", "a/b", "a b"] {
            assert!(!dns_name(bad, 253, true), "{bad:?}");
        }
        assert!(!dns_name("a.b", 63, false));
        assert!(is_namespace("shop-dr") && !is_namespace("-a") && !is_namespace(&"a".repeat(64)));
    }

    #[test]
    fn names_are_encoded_for_urls() {
        assert_eq!(url_encode("dev#team?x y"), "dev%23team%3Fx%20y");
        assert_eq!(url_encode("a.b-c_d~e"), "a.b-c_d~e");
    }
}
