use cairn_format::Id;
use thiserror::Error;

/// Result with the store's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong keeping or reading a repository. Every variant names the object and, where
/// there is one, what to do.
#[derive(Debug, Error)]
pub enum Error {
    /// The location holds no cairn repository.
    #[error(
        "{location} is not a cairn repository (no config object): check the location (an NFS or other mount that is not mounted looks empty), or create one with `cairn init`"
    )]
    NotARepository {
        /// Repository location as given.
        location: String,
    },
    /// `init` found an existing repository.
    #[error("{location} already holds a cairn repository; refusing to overwrite it")]
    AlreadyInitialized {
        /// Repository location.
        location: String,
    },
    /// An object is missing.
    #[error("object {object} is missing from the repository")]
    NotFound {
        /// Object path.
        object: String,
    },
    /// The storage failed.
    #[error("{op} {object}: {cause}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Object or path.
        object: String,
        /// Cause (part of the message, so not also a `source`).
        cause: std::io::Error,
    },
    /// A new pack could not be written to local storage (a full disk, a failing mount).
    #[error("writing a new pack to {location} failed: {cause}; nothing refers to it and its temporary file is removed: free space there (or fix the storage), then run the command again (packs already stored are reused)")]
    PackWrite {
        /// Repository location.
        location: String,
        /// What failed, naming the pack's temporary file or object.
        cause: String,
    },
    /// An object store request failed after its retries.
    #[error("{op} {object} at {location}: {cause}; check the endpoint, credentials and network, then run the command again")]
    Remote {
        /// What was being done.
        op: &'static str,
        /// Object path.
        object: String,
        /// Repository location (no secrets).
        location: String,
        /// The server's or client's answer.
        cause: String,
    },
    /// An object exists but its bytes are wrong.
    #[error("object {object} {}: {cause}{}", if cause.is_newer_format() { "was written by a newer cairn" } else { "is damaged" }, damage_scope(object))]
    Damaged {
        /// Object path.
        object: String,
        /// What is wrong (part of the message, so not also a `source`).
        cause: cairn_format::Error,
    },
    /// An object's name does not match the hash of its bytes.
    #[error("object {object} is damaged: its content does not match its name (blake3 {actual})")]
    NameMismatch {
        /// Object path.
        object: String,
        /// Hash of the bytes found.
        actual: Id,
    },
    /// A blob read back does not hash to its id.
    #[error(
        "blob {id} read from pack {pack} does not match its id: the pack is damaged, or an index \
         object lists the blob in the wrong pack (a planted claim); `cairn check --read-data` \
         names the pack, and `cairn repair index` rebuilds the index from the packs themselves"
    )]
    BlobMismatch {
        /// Blob id.
        id: Id,
        /// Pack holding it.
        pack: Id,
    },
    /// A blob referenced by a snapshot is in no index.
    #[error(
        "blob {0} is not in the repository index: the snapshot references data the index does not list (an index object lost or damaged, or the data itself missing)"
    )]
    BlobMissing(Id),
    /// No key object opens with the given identity.
    #[error("none of the given identities opens a key of this repository ({tried} key objects tried); check --identity / CAIRN_IDENTITY{}", damaged_keys(.damaged))]
    WrongIdentity {
        /// How many key objects were tried.
        tried: usize,
        /// Key objects whose bytes do not match their names.
        damaged: Vec<String>,
    },
    /// No passphrase key object opens with the passphrase.
    #[error("{}{}", if *tried == 0 { "this repository has no passphrase key: open it with its identity (--identity / CAIRN_IDENTITY); `cairn key add -i IDENTITY --new-passphrase-file FILE` adds one".to_string() } else { format!("the passphrase opens none of this repository's passphrase keys ({tried} tried)") }, damaged_keys(.damaged))]
    WrongPassphrase {
        /// Key objects whose bytes do not match their names.
        damaged: Vec<String>,
        /// How many passphrase key objects were tried.
        tried: usize,
    },
    /// Two key objects open with the same credentials but hold different secrets or recipients.
    #[error("key objects {first} and {second} both open with these credentials but disagree (recipients or secrets differ): someone with write access may have added a key object. Compare their recipients (`age -d` them with the identity) and remove the one you did not create")]
    ConflictingKeys {
        /// One key object.
        first: String,
        /// The other.
        second: String,
    },
    /// The credentials' keys are bound to another repository id than `config` names.
    #[error("{what} belongs to repository {key_repo}, but `config` names repository {repo}: these credentials are for another repository, or `config` was damaged or replaced (restore it from a copy of the repository, such as an `init --like` target)")]
    KeyMismatch {
        /// Where the keys came from: the write key, or a key object.
        what: String,
        /// Repository id in the key.
        key_repo: Id,
        /// Repository id in config.
        repo: Id,
    },
    /// The repository was opened with a write key and the operation needs content.
    #[error("this repository was opened with a write key, which can back up and list but cannot decrypt file contents; {what} needs the repository identity (--identity or CAIRN_IDENTITY)")]
    NeedsIdentity {
        /// The operation attempted.
        what: &'static str,
    },
    /// A write key tried to remove history from an append-only repository.
    #[error("{what} removes history, and write keys are append-only in this repository: a compromised backup host must not be able to erase earlier backups. Run it with the identity (--identity) from an administrator's machine, or let write keys apply retention with `cairn policy allow-host-retention --identity FILE`")]
    AppendOnly {
        /// The operation attempted.
        what: &'static str,
    },
    /// A snapshot specification matched nothing.
    #[error("no snapshot matches {0:?}; list them with `cairn snapshots`")]
    SnapshotNotFound(String),
    /// `latest` was asked for while a snapshot object could not be read: it may be the newest.
    #[error("cannot tell which snapshot is the latest: {object} cannot be read ({cause}){}, and it may be the newest. Name the snapshot to use by its id (`cairn snapshots` lists the readable ones); {}", if *more > 0 { format!(", nor can {more} more") } else { String::new() }, if *newer { "or use the newer cairn that wrote it (nothing is wrong with the object)" } else { "`cairn check` reports the damage. Putting the object back from a copy of the repository clears it, and so does `cairn forget ID` with its name (it holds that snapshot's record and nothing else)" })]
    LatestUnknown {
        /// The snapshot object (`snapshots/<id>`).
        object: String,
        /// Why it cannot be read.
        cause: String,
        /// How many more cannot be read.
        more: usize,
        /// `object` is intact, written by a newer cairn (no damage to repair).
        newer: bool,
    },
    /// A snapshot id prefix matched several.
    #[error("snapshot prefix {0:?} is ambiguous; give more digits")]
    AmbiguousSnapshot(String),
    /// Invalid arguments or key material.
    #[error("{0}")]
    Invalid(String),
    /// A local file could not be read or written: a backup source, or a restore target.
    #[error("{op} {path}: {cause}")]
    File {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: String,
        /// Cause (part of the message, so not also a `source`).
        cause: std::io::Error,
    },
    /// A backup source could not be read as what it should be.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// A restore could not go on.
    #[error(transparent)]
    Restore(#[from] crate::restore::RestoreError),
    /// A format error outside any one object.
    #[error(transparent)]
    Format(#[from] cairn_format::Error),
    /// The repository location or the object store configuration cannot work as given.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A repository location or object store setting that cannot be used as given: a usage error,
/// found before anything is read or written. Messages name the setting and never its secrets.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A `scheme:` that cairn does not read.
    #[error("repository {location}: cairn does not know the scheme {scheme}:// (use a path, file://, s3://, gs:// or az://)")]
    UnknownScheme {
        /// Location as given.
        location: String,
        /// The scheme.
        scheme: String,
    },
    /// `word:rest`, which could be a URL scheme or a relative path.
    #[error("repository {location}: {scheme}: looks like a URL scheme cairn does not know (it reads paths, file://, s3://, gs:// and az://); for a local directory of that name write ./{location}")]
    AmbiguousLocation {
        /// Location as given.
        location: String,
        /// The word before the colon.
        scheme: String,
    },
    /// restic's spelling of an S3 repository.
    #[error("repository {location} is restic's spelling of an S3 repository; cairn's is {cairn}")]
    ResticS3 {
        /// Location as given.
        location: String,
        /// The equivalent cairn arguments.
        cairn: String,
    },
    /// An object store URL without a bucket.
    #[error("repository {location} names no bucket (expected {scheme}://BUCKET/PREFIX)")]
    NoBucket {
        /// Location as given.
        location: String,
        /// The scheme.
        scheme: String,
    },
    /// An endpoint without `http://` or `https://`.
    #[error("{given_by} {endpoint} has no scheme: use http://{endpoint} or https://{endpoint}")]
    EndpointWithoutScheme {
        /// The flag, variable or file that set it.
        given_by: String,
        /// The endpoint (user info removed).
        endpoint: String,
    },
    /// An endpoint with another scheme than `http://` or `https://`.
    #[error("{given_by} {endpoint}: an S3 endpoint is an http:// or https:// URL")]
    EndpointScheme {
        /// The flag, variable or file that set it.
        given_by: String,
        /// The endpoint (user info removed).
        endpoint: String,
    },
    /// A plain-http endpoint while `AWS_ALLOW_HTTP=false`.
    #[error("{given_by} {endpoint} is plain http, which AWS_ALLOW_HTTP=false forbids: use https:// or unset AWS_ALLOW_HTTP")]
    HttpForbidden {
        /// The flag, variable or file that set it.
        given_by: String,
        /// The endpoint (user info removed).
        endpoint: String,
    },
    /// A boolean variable with another value than true or false.
    #[error("{variable}={value} is neither true nor false")]
    NotABool {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// An access key id without its secret.
    #[error("{given_by} has an access key id but no secret access key: set both (or neither)")]
    MissingSecret {
        /// Where the key id was found.
        given_by: String,
    },
    /// `AWS_PROFILE` names a profile that neither shared file holds.
    #[error("AWS_PROFILE={profile} names no profile in {files}")]
    NoSuchProfile {
        /// The profile.
        profile: String,
        /// The files looked in.
        files: String,
    },
    /// `AWS_MAX_ATTEMPTS` or a profile's `max_attempts` that is not a count of attempts.
    #[error(
        "{given_by} is {value:?}: it must be a whole number of attempts, 1 or more (1: no retries)"
    )]
    NotAnAttemptCount {
        /// The variable or profile setting.
        given_by: String,
        /// Its value.
        value: String,
    },
    /// Nothing gives credentials.
    #[error("no AWS credentials found: {looked}, and {why}; {advice}")]
    NoCredentials {
        /// Where credentials were looked for.
        looked: String,
        /// Why instance metadata gave none.
        why: String,
        /// What to do.
        advice: String,
    },
    /// A setting that must be a whole number.
    #[error("{name}={value} is not a whole number")]
    NotANumber {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The profile's credentials come from a source cairn does not implement.
    #[error("AWS profile {profile} gets its credentials through {setting}, which cairn does not implement; have the AWS CLI hand them over instead: add `credential_process = aws configure export-credentials --profile {profile} --format process` to another profile and use that one (or export AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN)")]
    UnsupportedCredentials {
        /// The profile.
        profile: String,
        /// The setting (`role_arn`, `sso_session`, …).
        setting: &'static str,
    },
    /// The CA bundle named by `AWS_CA_BUNDLE` or a profile's `ca_bundle` is unusable.
    #[error("the CA bundle {path} (from {given_by}) {cause}; it must be a readable file of PEM certificates")]
    CaBundle {
        /// The file.
        path: String,
        /// The variable or profile setting that named it.
        given_by: String,
        /// What is wrong.
        cause: String,
    },
    /// An AWS shared file that cannot be read or parsed.
    #[error("reading the AWS shared file {path}: {cause}")]
    AwsFile {
        /// The file.
        path: String,
        /// What is wrong (no file contents).
        cause: String,
    },
}

impl Error {
    /// A [`Error::File`] maker for `map_err`: `op` on `path` failed.
    pub(crate) fn file<E: Into<std::io::Error>>(
        op: &'static str,
        path: impl std::fmt::Display,
    ) -> impl FnOnce(E) -> Error {
        move |cause| Error::File {
            op,
            path: path.to_string(),
            cause: cause.into(),
        }
    }

    pub(crate) fn io(op: &'static str, object: impl Into<String>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return Error::NotFound {
                object: object.into(),
            };
        }
        Error::Io {
            op,
            object: object.into(),
            cause: source,
        }
    }

    /// Whether an object does not hold what its name says, or cannot be decrypted or decoded
    /// (a record of a newer format than this cairn reads is not damage).
    pub fn is_damage(&self) -> bool {
        match self {
            Error::NameMismatch { .. } => true,
            Error::Damaged { cause, .. } => !cause.is_newer_format(),
            _ => false,
        }
    }

    /// A failure to reach or read storage, as opposed to an object found missing or damaged:
    /// the operation could not run, nothing is known to be lost.
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Remote { .. } | Error::PackWrite { .. }
        )
    }

    /// [`Error::PackWrite`]: writing a new pack to `backend` failed with `cause`.
    pub(crate) fn pack_write(backend: &dyn crate::backend::Backend, cause: impl ToString) -> Error {
        Error::PackWrite {
            location: backend.location(),
            cause: cause.to_string(),
        }
    }

    /// What to do about this error, where it is kept apart from the message (`hint:` in text,
    /// `"hint"` in JSON).
    pub fn hint(&self) -> Option<&str> {
        use crate::restore::RestoreError;
        match self {
            Error::Restore(RestoreError::Refused { hint, .. }) => hint.as_deref(),
            // The cause of one entry's failure, as its message shows it.
            Error::Restore(
                RestoreError::Entry { cause, .. }
                | RestoreError::NotKept { cause, .. }
                | RestoreError::SetAside { cause, .. },
            ) => cause.hint(),
            Error::Remote { cause, .. }
                if ["UnknownIssuer", "unknown issuer", "self-signed", "self signed"]
                    .iter()
                    .any(|c| cause.contains(c)) =>
            {
                Some(
                    "a server certificate signed by a private CA needs that CA: AWS_CA_BUNDLE=FILE, \
                 or ca_bundle in the AWS profile",
                )
            }
            Error::BlobMissing(_) => Some(
                "run `cairn check`: `cairn repair index` rebuilds a lost or damaged index object \
                 from the packs; what is really gone, `cairn repair snapshots` drops (restore \
                 what is intact first, with --include)",
            ),
            _ => None,
        }
    }

    /// A usage error: the command cannot work as given, and nothing was touched.
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Config(_))
    }

    /// An object that could not be decoded. A storage failure met while reading it (a
    /// connection cut mid-download) is returned as itself: the object is not damaged.
    pub(crate) fn damaged(
        object: impl Into<String>,
        source: impl Into<cairn_format::Error>,
    ) -> Self {
        let cause = source.into();
        if let cairn_format::Error::Envelope(cairn_format::envelope::EnvelopeError::Io(io)) = cause
        {
            return match io.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(storage)) => *storage,
                Some(Err(other)) => Error::Io {
                    op: "reading",
                    object: object.into(),
                    cause: std::io::Error::other(other),
                },
                None => Error::Io {
                    op: "reading",
                    object: object.into(),
                    cause: std::io::Error::other("read failed"),
                },
            };
        }
        Error::Damaged {
            object: object.into(),
            cause,
        }
    }
}

/// The note on damaged key objects added to "no key opens" errors.
fn damaged_keys(damaged: &[String]) -> String {
    if damaged.is_empty() {
        String::new()
    } else {
        format!(
            "; key objects damaged (their bytes do not match their names): {}; restore them from a copy of the repository (an `init --like` target holds the same ones)",
            damaged.join(", ")
        )
    }
}

/// `e` and its sources on one line, outermost first; a source whose text the line already
/// holds is left out (clients often repeat their cause in their own message).
pub(crate) fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// What a damaged object leaves readable, said after its damage: packs hold some snapshots'
/// data; other objects' damage says what to do in its own context.
fn damage_scope(object: &str) -> &'static str {
    if object.starts_with("data/") || object.starts_with("tree/") {
        "; snapshots that do not use it stay readable"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_a_newer_format_is_not_damage() {
        let damaged = |cause| Error::damaged("snapshots/x", cause);
        let newer = cairn_format::Error::UnsupportedVersion {
            kind: "snapshot",
            found: 2,
            supported: 1,
        };
        let e = damaged(newer);
        assert!(!e.is_damage());
        assert!(
            e.to_string()
                .starts_with("object snapshots/x was written by a newer cairn: snapshot record"),
            "{e}"
        );
        let broken = cairn_format::Error::Decompress("bad frame".into());
        assert!(damaged(broken).is_damage());
        let renamed = Error::NameMismatch {
            object: "snapshots/x".into(),
            actual: Id::of_object(b"x"),
        };
        assert!(renamed.is_damage());
        assert!(!Error::SnapshotNotFound("x".into()).is_damage());
    }
}
