//! How to reach and sign for an S3 repository, resolved once from cairn's options, the AWS
//! environment variables and the AWS profile, with the AWS SDKs' precedence:
//!
//! * endpoint: `--s3-endpoint` > `AWS_ENDPOINT_URL_S3` > `AWS_ENDPOINT_URL` > the profile's
//!   `[services]` `s3` `endpoint_url` > the profile's `endpoint_url` > AWS. Only the flag counts
//!   when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` (or the profile's
//!   `ignore_configured_endpoint_urls`) is true.
//! * plain http: allowed for an http:// endpoint the user configured, unless
//!   `AWS_ALLOW_HTTP=false`.
//! * region: `--s3-region` > `AWS_REGION` > `AWS_DEFAULT_REGION` > the profile's > us-east-1.
//! * credentials: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN` > the
//!   profile's in the credentials file > in the config file > the profile's
//!   `credential_process` > object_store's own chain (web identity, container credentials,
//!   instance metadata, asked once briefly first: see `imds`). A repository's own profile or
//!   credentials file (cairn.toml) leaves the environment's keys out. A profile that names a source cairn does not implement (`role_arn`,
//!   SSO) is an error rather than a silent fall to instance metadata.
//! * retries: `--s3-retries` > `AWS_MAX_ATTEMPTS` > the profile's `max_attempts` (both count
//!   the first attempt: retries are one less) > 10.
//! * certificates trusted besides the system's (an S3 server with a private CA, as
//!   OpenShift Data Foundation's): `AWS_CA_BUNDLE` > the profile's `ca_bundle`.

use super::aws_profile::{self, StaticCredentials};
use super::RemoteOptions;
use crate::ConfigError;

/// An environment lookup (the process's, or a test's). Empty values count as unset.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, empty values as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Where the credentials come from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// Given (environment or profile).
    Static(StaticCredentials),
    /// Printed by the profile's `credential_process` command.
    Process {
        /// The command line.
        command: String,
        /// The profile and file that name it, for messages.
        given_by: String,
    },
    /// object_store's provider chain: web identity, container credentials, instance metadata.
    Chain,
    /// Instance metadata only (nothing else gives credentials): asked at `endpoint`, each of
    /// `attempts` within `timeout`, before object_store is.
    InstanceMetadata {
        /// `http://HOST[:PORT]`.
        endpoint: String,
        /// One attempt's bound.
        timeout: std::time::Duration,
        /// Attempts.
        attempts: u32,
        /// `AWS_IMDSV1_FALLBACK`: without a session token, IMDSv1 will do.
        v1_fallback: bool,
        /// Where else credentials were looked for, for the error when it does not answer.
        looked: String,
        /// What to do then.
        advice: String,
    },
}

/// The resolved settings.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct S3Config {
    /// Region to sign for.
    pub region: String,
    /// Endpoint URL of an S3-compatible server; `None` is AWS.
    pub endpoint: Option<String>,
    /// Whether plain http may be used.
    pub allow_http: bool,
    /// Credentials.
    pub credentials: Credentials,
    /// A PEM file of certificates to trust besides the system's, and what named it.
    pub ca_bundle: Option<(String, String)>,
    /// Retries from `AWS_MAX_ATTEMPTS` or the profile's `max_attempts` (attempts less one).
    pub retries: Option<usize>,
}

/// A boolean setting as the AWS tools spell it.
pub(crate) fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::NotABool {
            variable,
            value: value.to_string(),
        }),
    }
}

fn env_bool(env: Lookup, variable: &'static str) -> Result<Option<bool>, ConfigError> {
    env(variable).map(|v| parse_bool(variable, &v)).transpose()
}

/// `url` without user info (`http://user:pass@host` → `http://…@host`), for messages.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("…@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Check that `endpoint` is an http(s) URL; returns whether it is plain http.
fn check_endpoint(given_by: &str, endpoint: &str) -> Result<bool, ConfigError> {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return Err(ConfigError::EndpointWithoutScheme {
            given_by: given_by.to_string(),
            endpoint: redact(endpoint),
        });
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" if !rest.is_empty() => Ok(scheme.eq_ignore_ascii_case("http")),
        _ => Err(ConfigError::EndpointScheme {
            given_by: given_by.to_string(),
            endpoint: redact(endpoint),
        }),
    }
}

/// Variables that give object_store's chain its credentials (web identity, container).
const CHAIN_VARIABLES: [&str; 3] = [
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// Instance metadata as the last source of credentials, with the AWS SDKs' settings:
/// `AWS_EC2_METADATA_DISABLED`, `AWS_EC2_METADATA_SERVICE_ENDPOINT` (or object_store's
/// `AWS_METADATA_ENDPOINT`), `AWS_METADATA_SERVICE_TIMEOUT` (whole seconds, at least 1),
/// `AWS_METADATA_SERVICE_NUM_ATTEMPTS` (1), and object_store's `AWS_IMDSV1_FALLBACK`.
fn instance_metadata(
    env: Lookup,
    name: &str,
    files: &str,
    explicit: bool,
) -> Result<Credentials, ConfigError> {
    let (looked, advice) = if explicit {
        (
            format!("none for this repository's profile {name} in {files} (keys in the environment are not used for a repository with its own profile or credentials file)"),
            "add aws_access_key_id and aws_secret_access_key, or a credential_process, to that profile".to_string(),
        )
    } else {
        (
            format!("none in the environment (AWS_ACCESS_KEY_ID), none for profile {name} in {files}"),
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile with keys or a credential_process".to_string(),
        )
    };
    if env_bool(env, "AWS_EC2_METADATA_DISABLED")? == Some(true) {
        return Err(ConfigError::NoCredentials {
            looked,
            why: "instance metadata is off (AWS_EC2_METADATA_DISABLED)".into(),
            advice,
        });
    }
    let number = |name: &'static str, default: u32| match env(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .map_err(|_| ConfigError::NotANumber { name, value: v }),
    };
    Ok(Credentials::InstanceMetadata {
        endpoint: env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .or_else(|| env("AWS_METADATA_ENDPOINT"))
            .unwrap_or_else(|| super::imds::DEFAULT_ENDPOINT.to_string()),
        timeout: std::time::Duration::from_secs(
            number("AWS_METADATA_SERVICE_TIMEOUT", 1)?.max(1).into(),
        ),
        attempts: number("AWS_METADATA_SERVICE_NUM_ATTEMPTS", 1)?,
        v1_fallback: env_bool(env, "AWS_IMDSV1_FALLBACK")?.unwrap_or(false),
        looked,
        advice,
    })
}

/// Resolve the settings from `opts` (cairn's flags) and the environment `env`.
pub(crate) fn resolve(opts: &RemoteOptions, env: Lookup) -> Result<S3Config, ConfigError> {
    // A repository's own profile and credentials file (cairn.toml) stand in for the
    // environment's, without changing the process environment.
    let overlay = |name: &str| match name {
        "AWS_PROFILE" if opts.aws_profile.is_some() => opts.aws_profile.clone(),
        "AWS_SHARED_CREDENTIALS_FILE" if opts.aws_credentials_file.is_some() => opts
            .aws_credentials_file
            .as_ref()
            .map(|p| p.display().to_string()),
        "AWS_CA_BUNDLE" if opts.aws_ca_bundle.is_some() => {
            opts.aws_ca_bundle.as_ref().map(|p| p.display().to_string())
        }
        _ => env(name),
    };
    let env: Lookup = &overlay;
    let profile = aws_profile::load(env)?;
    let region = opts
        .s3_region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or(profile.region)
        .unwrap_or_else(|| "us-east-1".to_string());

    let ignore_configured = env_bool(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")?
        .unwrap_or(profile.ignore_endpoint_urls);
    let from_file = |what: &str| format!("{what} in {}", profile.config_file);
    let configured = [
        (
            "AWS_ENDPOINT_URL_S3".to_string(),
            env("AWS_ENDPOINT_URL_S3"),
        ),
        ("AWS_ENDPOINT_URL".to_string(), env("AWS_ENDPOINT_URL")),
        (
            from_file("the s3 endpoint_url of the services section"),
            profile.s3_endpoint_url,
        ),
        (from_file("endpoint_url"), profile.endpoint_url),
    ];
    let endpoint = match &opts.s3_endpoint {
        Some(e) => Some(("--s3-endpoint".to_string(), e.clone())),
        None if ignore_configured => None,
        None => configured
            .into_iter()
            .find_map(|(given_by, e)| e.map(|e| (given_by, e))),
    };
    let http = match &endpoint {
        Some((given_by, e)) => check_endpoint(given_by, e)?,
        None => false,
    };
    let allow_http = match env_bool(env, "AWS_ALLOW_HTTP")? {
        Some(false) if http => {
            let (given_by, e) = endpoint.unwrap_or_default();
            return Err(ConfigError::HttpForbidden {
                given_by,
                endpoint: redact(&e),
            });
        }
        Some(allowed) => allowed,
        None => http,
    };

    // A profile named for the repository is an explicit choice: as with botocore's
    // `--profile`, keys in the environment do not override it (AWS_PROFILE does not negate
    // them; an explicit profile does).
    let explicit = opts.aws_profile.is_some() || opts.aws_credentials_file.is_some();
    let credentials = match env("AWS_ACCESS_KEY_ID").filter(|_| !explicit) {
        Some(key_id) => Credentials::Static(StaticCredentials {
            key_id,
            secret: env("AWS_SECRET_ACCESS_KEY").ok_or_else(|| ConfigError::MissingSecret {
                given_by: "the environment (AWS_ACCESS_KEY_ID)".to_string(),
            })?,
            token: env("AWS_SESSION_TOKEN"),
        }),
        None => match (profile.credentials, profile.process) {
            (Some(c), _) => Credentials::Static(c),
            (None, Some((command, file))) => Credentials::Process {
                command,
                given_by: format!("credential_process of profile {} in {file}", profile.name),
            },
            // The environment's own sources (pod identity, container credentials) still
            // count; else a profile that meant something cairn cannot do is said to, and
            // without one instance metadata is the last source.
            (None, None) => match (
                CHAIN_VARIABLES.iter().any(|v| env(v).is_some()),
                profile.unsupported,
            ) {
                (true, _) => Credentials::Chain,
                (false, Some(setting)) => {
                    return Err(ConfigError::UnsupportedCredentials {
                        profile: profile.name,
                        setting,
                    })
                }
                (false, None) => instance_metadata(env, &profile.name, &profile.files, explicit)?,
            },
        },
    };
    let ca_bundle = match env("AWS_CA_BUNDLE") {
        Some(path) => Some(("AWS_CA_BUNDLE".to_string(), path)),
        None => profile
            .ca_bundle
            .map(|path| (format!("ca_bundle in {}", profile.config_file), path)),
    };
    let attempts = match env("AWS_MAX_ATTEMPTS") {
        Some(v) => Some(("AWS_MAX_ATTEMPTS".to_string(), v)),
        None => profile
            .max_attempts
            .map(|v| (format!("max_attempts in {}", profile.config_file), v)),
    };
    let retries = attempts
        .map(|(given_by, v)| match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n - 1),
            _ => Err(ConfigError::NotAnAttemptCount { given_by, value: v }),
        })
        .transpose()?;
    Ok(S3Config {
        region,
        endpoint: endpoint.map(|(_, e)| e),
        allow_http,
        credentials,
        ca_bundle,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::{resolve, Credentials, S3Config};
    use crate::backend::RemoteOptions;
    use crate::ConfigError;
    use std::collections::HashMap;

    const CONFIG: &str = "[default]\nregion = eu-north-1\n\n[profile ops]\nregion = eu-west-3\nendpoint_url = https://profile.example\naws_access_key_id = CFGKEY\naws_secret_access_key = cfgsecret\n\n[profile svc]\nservices = mine\nendpoint_url = https://global.example\n\n[services mine]\ns3 =\n  endpoint_url = http://services.example:9000\n";
    const CREDENTIALS: &str =
        "[ops]\naws_access_key_id = FILEKEY\naws_secret_access_key = filesecret\n";

    /// Resolve with flags `endpoint`/`region` and the environment `vars`, HOME holding the
    /// shared files above.
    fn run(
        endpoint: Option<&str>,
        region: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<S3Config, ConfigError> {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(aws.join("config"), CONFIG).unwrap();
        std::fs::write(aws.join("credentials"), CREDENTIALS).unwrap();
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("HOME".into(), home.path().display().to_string());
        let opts = RemoteOptions {
            s3_endpoint: endpoint.map(str::to_string),
            s3_region: region.map(str::to_string),
            ..RemoteOptions::default()
        };
        resolve(&opts, &|k| env.get(k).cloned())
    }

    /// [`resolve`] with `opts` and `vars`, `HOME` holding `.aws/config` = `config` only.
    fn resolve_with_config(
        config: &str,
        opts: &RemoteOptions,
        vars: &[(&str, &str)],
    ) -> Result<S3Config, ConfigError> {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        std::fs::write(home.path().join(".aws/config"), config).unwrap();
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("HOME".into(), home.path().display().to_string());
        resolve(opts, &|k| env.get(k).cloned())
    }

    fn region(region_flag: Option<&str>, vars: &[(&str, &str)]) -> String {
        run(None, region_flag, vars).unwrap().region
    }

    fn endpoint(flag: Option<&str>, vars: &[(&str, &str)]) -> Option<String> {
        run(flag, None, vars).unwrap().endpoint
    }

    #[test]
    fn a_repository_profile_and_credentials_file_stand_in_for_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repo-credentials");
        std::fs::write(
            &file,
            "[backup]\naws_access_key_id = REPOKEY\naws_secret_access_key = reposecret\n",
        )
        .unwrap();
        // Keys in the environment (a unit's, for the primary repository) do not override
        // the profile named for this one.
        let env: HashMap<String, String> = [
            ("AWS_PROFILE", "ops"),
            ("HOME", "/nonexistent"),
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let opts = RemoteOptions {
            aws_profile: Some("backup".into()),
            aws_credentials_file: Some(file.clone()),
            ..RemoteOptions::default()
        };
        let cfg = resolve(&opts, &|k| env.get(k).cloned()).unwrap();
        match cfg.credentials {
            Credentials::Static(c) => assert_eq!(c.key_id, "REPOKEY"),
            _ => panic!("the repository's credentials file was not read"),
        }
        // A profile of the repository's without keys: not the environment's keys either, and
        // the error, should instance metadata give none, says so.
        std::fs::write(&file, "[backup]\nregion = eu-west-1\n").unwrap();
        match resolve(&opts, &|k| env.get(k).cloned())
            .unwrap()
            .credentials
        {
            Credentials::InstanceMetadata { looked, advice, .. } => {
                assert!(
                    looked.contains("this repository's profile backup"),
                    "{looked}"
                );
                assert!(advice.contains("to that profile"), "{advice}");
            }
            other => panic!("{other:?}"),
        }
        // A profile the repository's file lacks is an error naming it, as AWS_PROFILE's is.
        let opts = RemoteOptions {
            aws_profile: Some("absent".into()),
            ..opts
        };
        let err = resolve(&opts, &|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn ca_bundle_precedence() {
        let bundle = |opts: &RemoteOptions, vars: &[(&str, &str)], config: &str| {
            resolve_with_config(config, opts, vars)
                .unwrap()
                .ca_bundle
                .map(|(given_by, path)| (given_by.split(' ').next().unwrap().to_string(), path))
        };
        let none = RemoteOptions::default();
        let profile = "[default]\nca_bundle = /p.pem\n";
        assert_eq!(bundle(&none, &[], ""), None);
        assert_eq!(
            bundle(&none, &[], profile),
            Some(("ca_bundle".into(), "/p.pem".into()))
        );
        let env = [("AWS_CA_BUNDLE", "/e.pem")];
        assert_eq!(
            bundle(&none, &env, profile),
            Some(("AWS_CA_BUNDLE".into(), "/e.pem".into()))
        );
        // A configured repository's own bundle stands in for the environment's.
        let repo = RemoteOptions {
            aws_ca_bundle: Some("/r.pem".into()),
            ..RemoteOptions::default()
        };
        assert_eq!(
            bundle(&repo, &env, profile),
            Some(("AWS_CA_BUNDLE".into(), "/r.pem".into()))
        );
    }

    #[test]
    fn region_precedence() {
        let both = [("AWS_REGION", "r1"), ("AWS_DEFAULT_REGION", "r2")];
        assert_eq!(region(Some("flag"), &both), "flag");
        assert_eq!(region(None, &both), "r1");
        assert_eq!(region(None, &both[1..]), "r2");
        assert_eq!(region(None, &[]), "eu-north-1");
        assert_eq!(region(None, &[("AWS_PROFILE", "ops")]), "eu-west-3");
        assert_eq!(region(None, &[("AWS_PROFILE", "svc")]), "us-east-1");
    }

    #[test]
    fn endpoint_precedence() {
        let all = [
            ("AWS_PROFILE", "svc"),
            ("AWS_ENDPOINT_URL_S3", "https://s3var"),
            ("AWS_ENDPOINT_URL", "https://var"),
        ];
        let e = endpoint;
        assert_eq!(
            e(Some("https://flag"), &all).as_deref(),
            Some("https://flag")
        );
        assert_eq!(e(None, &all).as_deref(), Some("https://s3var"));
        assert_eq!(e(None, &[all[0], all[2]]).as_deref(), Some("https://var"));
        assert_eq!(
            e(None, &all[..1]).as_deref(),
            Some("http://services.example:9000")
        );
        assert_eq!(
            e(None, &[("AWS_PROFILE", "ops")]).as_deref(),
            Some("https://profile.example")
        );
        assert_eq!(e(None, &[]), None);
        let ignore = [
            all[0],
            all[1],
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ];
        assert_eq!(e(None, &ignore), None);
        assert_eq!(
            e(Some("https://flag"), &ignore).as_deref(),
            Some("https://flag")
        );
    }

    #[test]
    fn plain_http_is_allowed_when_named_unless_forbidden() {
        let c = run(Some("http://h:9000"), None, &[]).unwrap();
        assert!(c.allow_http);
        assert!(!run(Some("https://h"), None, &[]).unwrap().allow_http);
        assert!(
            run(None, None, &[("AWS_ALLOW_HTTP", "true")])
                .unwrap()
                .allow_http
        );
        let forbid = [("AWS_ALLOW_HTTP", "false")];
        assert!(matches!(
            run(Some("http://h"), None, &forbid),
            Err(ConfigError::HttpForbidden { .. })
        ));
        assert!(matches!(
            run(None, None, &[("AWS_ALLOW_HTTP", "maybe")]),
            Err(ConfigError::NotABool { .. })
        ));
    }

    #[test]
    fn endpoints_without_http_scheme_are_refused_without_user_info() {
        let e = run(Some("127.0.0.1:9000"), None, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--s3-endpoint 127.0.0.1:9000 has no scheme: use http://127.0.0.1:9000 or https://127.0.0.1:9000"
        );
        let e = run(None, None, &[("AWS_ENDPOINT_URL", "minio:9000")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("AWS_ENDPOINT_URL minio:9000 has no"),
            "{e}"
        );
        let e = run(Some("ftp://u:pw@h/x"), None, &[])
            .unwrap_err()
            .to_string();
        assert!(matches!(
            run(Some("ftp://h"), None, &[]),
            Err(ConfigError::EndpointScheme { .. })
        ));
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn credential_precedence() {
        let creds = |vars: &[(&str, &str)]| match run(None, None, vars).unwrap().credentials {
            Credentials::Static(c) => Some((c.key_id, c.token)),
            _ => None,
        };
        let env = [
            ("AWS_PROFILE", "ops"),
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_SESSION_TOKEN", "tok"),
        ];
        assert_eq!(creds(&env), Some(("ENVKEY".into(), Some("tok".into()))));
        assert_eq!(creds(&env[..1]), Some(("FILEKEY".into(), None)));
        assert_eq!(creds(&[]), None);
        assert!(matches!(
            run(None, None, &env[..2]),
            Err(ConfigError::MissingSecret { .. })
        ));
    }

    #[test]
    fn retries_follow_aws_max_attempts_then_the_profiles_max_attempts() {
        let retries = |flag: Option<usize>, vars: &[(&str, &str)]| {
            let opts = RemoteOptions {
                retries: flag,
                ..RemoteOptions::default()
            };
            resolve_with_config("[default]\nmax_attempts = 4\n", &opts, vars)
                .map(|c| opts.retries.or(c.retries))
        };
        assert_eq!(retries(None, &[]).unwrap(), Some(3));
        assert_eq!(
            retries(None, &[("AWS_MAX_ATTEMPTS", "1")]).unwrap(),
            Some(0)
        );
        assert_eq!(
            retries(Some(7), &[("AWS_MAX_ATTEMPTS", "1")]).unwrap(),
            Some(7)
        );
        for bad in ["0", "many", "-2"] {
            let e = retries(None, &[("AWS_MAX_ATTEMPTS", bad)]).unwrap_err();
            assert!(matches!(e, ConfigError::NotAnAttemptCount { .. }), "{e}");
        }
    }

    #[test]
    fn a_credential_process_comes_after_keys_and_an_unsupported_source_is_refused() {
        let config = concat!(
            "[profile proc]\ncredential_process = /bin/helper --x\n",
            "[profile both]\naws_access_key_id = K\naws_secret_access_key = S\ncredential_process = /bin/helper\n",
            "[profile sso]\nsso_session = corp\n",
            "[profile role]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = proc\n",
        );
        let resolve_with =
            |vars: &[(&str, &str)]| resolve_with_config(config, &RemoteOptions::default(), vars);
        match resolve_with(&[("AWS_PROFILE", "proc")])
            .unwrap()
            .credentials
        {
            Credentials::Process { command, given_by } => {
                assert_eq!(command, "/bin/helper --x");
                assert!(given_by.contains("profile proc"), "{given_by}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve_with(&[("AWS_PROFILE", "both")])
                .unwrap()
                .credentials,
            Credentials::Static(_)
        ));
        for (profile, setting) in [("sso", "sso_session"), ("role", "role_arn")] {
            let e = resolve_with(&[("AWS_PROFILE", profile)]).unwrap_err();
            assert!(
                matches!(&e, ConfigError::UnsupportedCredentials { setting: s, .. } if *s == setting),
                "{e}"
            );
            assert!(e.to_string().contains("export-credentials"), "{e}");
            // The environment's keys, or pod identity, still do.
            let keys = [
                ("AWS_PROFILE", profile),
                ("AWS_ACCESS_KEY_ID", "K"),
                ("AWS_SECRET_ACCESS_KEY", "S"),
            ];
            assert!(resolve_with(&keys).is_ok());
            let pod = [
                ("AWS_PROFILE", profile),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ];
            assert_eq!(resolve_with(&pod).unwrap().credentials, Credentials::Chain);
        }
    }
}
