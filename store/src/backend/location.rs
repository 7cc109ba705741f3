//! Telling a repository location's kind: a local path, or an object store URL. Anything that
//! looks like a URL cairn does not read is refused, so a mistyped remote never becomes a local
//! directory of that name.

use crate::ConfigError;

/// What a location names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Location<'a> {
    /// A directory on a local (or mounted) file system.
    Local(&'a str),
    /// An object store URL (`s3://`, `gs://`, `az://`).
    Remote,
}

/// Object store schemes cairn reads.
const REMOTE_SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// Classify `location`: `file://PATH` and paths are local; `s3://`, `gs://` and `az://` are
/// remote; other `scheme://`, restic's `s3:HOST/BUCKET` and a bare `word:rest` are refused.
/// Paths starting with `/` or `.` are always paths.
pub(crate) fn parse(location: &str) -> Result<Location<'_>, ConfigError> {
    if let Some(path) = location.strip_prefix("file://") {
        return Ok(Location::Local(path));
    }
    let Some((word, rest)) = location.split_once(':') else {
        return Ok(Location::Local(location));
    };
    if !looks_like_scheme(word) {
        return Ok(Location::Local(location));
    }
    if !rest.starts_with("//") {
        if word == "s3" {
            return Err(restic_s3(location, rest));
        }
        return Err(ConfigError::AmbiguousLocation {
            location: location.to_string(),
            scheme: word.to_string(),
        });
    }
    if REMOTE_SCHEMES.contains(&word) {
        Ok(Location::Remote)
    } else {
        Err(ConfigError::UnknownScheme {
            location: location.to_string(),
            scheme: word.to_string(),
        })
    }
}

/// RFC 3986 scheme syntax: a letter, then letters, digits, `+`, `-` or `.`.
fn looks_like_scheme(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The error for restic's `s3:HOST[:PORT]/BUCKET/PREFIX` or `s3:http[s]://HOST/BUCKET/PREFIX`,
/// with the cairn arguments that mean the same (restic's default scheme is https).
fn restic_s3(location: &str, rest: &str) -> ConfigError {
    let (scheme, rest) = match rest.split_once("://") {
        Some((s @ ("http" | "https"), r)) => (s, r),
        _ => ("https", rest),
    };
    let mut parts = rest.splitn(3, '/');
    let host = parts.next().filter(|h| !h.is_empty());
    let bucket = parts.next().filter(|b| !b.is_empty());
    let prefix = parts.next().map(|p| p.trim_matches('/')).unwrap_or("");
    let cairn = match (host, bucket) {
        (Some(host), Some(bucket)) => {
            let repo = if prefix.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}/{prefix}")
            };
            if host == "s3.amazonaws.com" {
                format!("--repo {repo} (AWS S3 is the default endpoint)")
            } else {
                format!("--repo {repo} --s3-endpoint {scheme}://{host}")
            }
        }
        _ => "--repo s3://BUCKET/PREFIX --s3-endpoint https://HOST:PORT".to_string(),
    };
    ConfigError::ResticS3 {
        location: location.to_string(),
        cairn,
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Location};
    use crate::ConfigError;

    fn local(l: &str) -> bool {
        parse(l) == Ok(Location::Local(l))
    }

    fn restic_hint(l: &str) -> String {
        match parse(l) {
            Err(ConfigError::ResticS3 { cairn, .. }) => cairn,
            other => panic!("{l}: {other:?}"),
        }
    }

    #[test]
    fn paths_stay_paths() {
        for l in [
            "/mnt/x:y",
            "./a:b",
            "../a:b",
            "repo",
            "a/b:c",
            "/srv/s3:bucket",
            "_a:b",
        ] {
            assert!(local(l), "{l}");
        }
        assert_eq!(parse("file:///srv/r"), Ok(Location::Local("/srv/r")));
        assert_eq!(parse("file://rel/r"), Ok(Location::Local("rel/r")));
    }

    #[test]
    fn object_store_urls_are_remote() {
        for l in ["s3://b", "s3://b/p/q", "gs://b/p", "az://c/p"] {
            assert_eq!(parse(l), Ok(Location::Remote), "{l}");
        }
    }

    #[test]
    fn unknown_schemes_and_bare_words_are_refused() {
        for l in [
            "foo://x",
            "sftp://host/p",
            "S3://b",
            "s3a://b",
            "http://h/b",
        ] {
            assert!(
                matches!(parse(l), Err(ConfigError::UnknownScheme { .. })),
                "{l}"
            );
        }
        for l in ["a:b", "sftp:host:/p", "rest:http://h/", "b2:bucket", "c:x"] {
            let e = parse(l).unwrap_err();
            assert!(matches!(e, ConfigError::AmbiguousLocation { .. }), "{l}");
            assert!(e.to_string().contains(&format!("./{l}")), "{e}");
        }
    }

    #[test]
    fn restic_s3_spellings_get_the_cairn_equivalent() {
        assert_eq!(
            restic_hint("s3:127.0.0.1:9000/bkt/cl/one"),
            "--repo s3://bkt/cl/one --s3-endpoint https://127.0.0.1:9000"
        );
        assert_eq!(
            restic_hint("s3:http://minio:9000/bkt"),
            "--repo s3://bkt --s3-endpoint http://minio:9000"
        );
        assert_eq!(
            restic_hint("s3:https://rgw.example/bkt/p/"),
            "--repo s3://bkt/p --s3-endpoint https://rgw.example"
        );
        assert!(restic_hint("s3:s3.amazonaws.com/bkt").starts_with("--repo s3://bkt ("));
        assert!(restic_hint("s3:host").contains("BUCKET"));
    }
}
