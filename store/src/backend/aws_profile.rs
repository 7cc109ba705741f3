//! One profile of the AWS shared files, read as the AWS CLI and SDKs read them: the profile
//! named by `AWS_PROFILE` (else `default`), from `AWS_SHARED_CREDENTIALS_FILE` (else
//! `~/.aws/credentials`, section `[NAME]`) and `AWS_CONFIG_FILE` (else `~/.aws/config`,
//! section `[profile NAME]`, or `[default]`). Fields read: `aws_access_key_id`,
//! `aws_secret_access_key`, `aws_session_token` (credentials file first, then config file),
//! and from the config file `region`, `endpoint_url`, `ignore_configured_endpoint_urls` and
//! the `s3` `endpoint_url` of the `[services NAME]` section the profile's `services` names;
//! `credential_process` from either file (see [`super::credential_process`]).

use super::s3_config::{parse_bool, Lookup};
use crate::ConfigError;
use ini::{Ini, ParseOption, Properties};
use std::path::PathBuf;

/// Static credentials.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StaticCredentials {
    /// Access key id.
    pub key_id: String,
    /// Secret access key (never printed).
    pub secret: String,
    /// Session token, for temporary credentials (never printed).
    pub token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticCredentials({}, …)", self.key_id)
    }
}

/// What the profile says (every field optional).
#[derive(Debug, Default)]
pub(crate) struct Profile {
    /// The profile's name.
    pub name: String,
    /// Static credentials.
    pub credentials: Option<StaticCredentials>,
    /// `credential_process`: a command printing credentials, and the file that names it.
    pub process: Option<(String, String)>,
    /// A credential source cairn does not implement (`role_arn`, `sso_session`, …), named
    /// for the error that says so when nothing else gives credentials.
    pub unsupported: Option<&'static str>,
    /// `region`.
    pub region: Option<String>,
    /// `endpoint_url`, for every service.
    pub endpoint_url: Option<String>,
    /// `endpoint_url` of `s3` in the profile's `[services …]` section.
    pub s3_endpoint_url: Option<String>,
    /// `ignore_configured_endpoint_urls = true`.
    pub ignore_endpoint_urls: bool,
    /// `ca_bundle`: a PEM file of certificates to trust besides the system's.
    pub ca_bundle: Option<String>,
    /// `max_attempts`, as written.
    pub max_attempts: Option<String>,
    /// The config file, for messages.
    pub config_file: String,
    /// Both files, for messages.
    pub files: String,
}

/// The shared file `var` names (a leading `~/` is the home directory, as the AWS tools
/// expand it), else `~/.aws/NAME`.
fn shared_file(env: Lookup, var: &str, name: &str) -> Option<PathBuf> {
    match env(var) {
        Some(v) => match (v.strip_prefix("~/"), env("HOME")) {
            (Some(rest), Some(home)) => Some(PathBuf::from(home).join(rest)),
            _ => Some(PathBuf::from(v)),
        },
        None => env("HOME").map(|h| PathBuf::from(h).join(".aws").join(name)),
    }
}

/// Parse a shared file; a missing one is empty, as for the AWS tools.
fn read(path: &Option<PathBuf>) -> Result<Option<Ini>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError::AwsFile {
                path: path.display().to_string(),
                cause: e.to_string(),
            })
        }
    };
    // The AWS format: no quoting or escapes; indented lines continue a value (nested settings).
    let opt = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        ..ParseOption::default()
    };
    // The parser's message may quote the file; only the line number is given.
    Ini::load_from_str_opt(&text, opt)
        .map(Some)
        .map_err(|e| ConfigError::AwsFile {
            path: path.display().to_string(),
            cause: format!("not in the INI format at line {}", e.line),
        })
}

/// Static credentials in `section`, if it holds a key id.
fn credentials(
    section: Option<&Properties>,
    given_by: impl FnOnce() -> String,
) -> Result<Option<StaticCredentials>, ConfigError> {
    let Some(key_id) = section.and_then(|s| s.get("aws_access_key_id")) else {
        return Ok(None);
    };
    let get = |k: &str| section.and_then(|s| s.get(k)).map(str::to_string);
    let secret = get("aws_secret_access_key").ok_or_else(|| ConfigError::MissingSecret {
        given_by: given_by(),
    })?;
    Ok(Some(StaticCredentials {
        key_id: key_id.to_string(),
        secret,
        token: get("aws_session_token"),
    }))
}

/// `key = value` of a nested setting block (`s3 =` followed by indented lines).
fn nested<'a>(block: &'a str, key: &str) -> Option<&'a str> {
    block.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Credential sources of a profile that cairn does not implement (the AWS CLI does: its
/// `aws configure export-credentials --format process` turns any of them into a
/// `credential_process`).
const UNSUPPORTED: [&str; 5] = [
    "role_arn",
    "sso_session",
    "sso_start_url",
    "credential_source",
    "web_identity_token_file",
];

/// Read the profile. `AWS_PROFILE` naming a profile that neither file holds is an error.
pub(crate) fn load(env: Lookup) -> Result<Profile, ConfigError> {
    let explicit = env("AWS_PROFILE");
    let name = explicit.clone().unwrap_or_else(|| "default".to_string());
    let creds_path = shared_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_path = shared_file(env, "AWS_CONFIG_FILE", "config");
    let shown = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or_else(|| "(no HOME)".to_string(), |p| p.display().to_string())
    };
    let creds_ini = read(&creds_path)?;
    let config_ini = read(&config_path)?;
    let creds_section = creds_ini
        .as_ref()
        .and_then(|i| i.section(Some(name.as_str())));
    let config_section = config_ini.as_ref().and_then(|i| {
        let named = i.section(Some(format!("profile {name}")));
        if name == "default" {
            named.or_else(|| i.section(Some("default")))
        } else {
            named
        }
    });
    if explicit.is_some() && creds_section.is_none() && config_section.is_none() {
        return Err(ConfigError::NoSuchProfile {
            profile: name,
            files: format!("{} or {}", shown(&creds_path), shown(&config_path)),
        });
    }
    let credentials = match credentials(creds_section, || {
        format!("profile {name} in {}", shown(&creds_path))
    })? {
        Some(c) => Some(c),
        None => credentials(config_section, || {
            format!("profile {name} in {}", shown(&config_path))
        })?,
    };
    let get = |k: &str| config_section.and_then(|s| s.get(k)).map(str::to_string);
    // Either file may hold these, as the AWS CLI reads them; the credentials file first.
    let either = |k: &str| {
        let in_creds = creds_section
            .and_then(|s| s.get(k))
            .map(|v| (v, &creds_path));
        in_creds
            .or_else(|| {
                config_section
                    .and_then(|s| s.get(k))
                    .map(|v| (v, &config_path))
            })
            .map(|(v, path)| (v.to_string(), shown(path)))
    };
    let process = either("credential_process");
    let unsupported = UNSUPPORTED.iter().copied().find(|k| either(k).is_some());
    let s3_endpoint_url = get("services")
        .and_then(|services| {
            config_ini
                .as_ref()?
                .section(Some(format!("services {services}")))?
                .get("s3")
        })
        .and_then(|block| nested(block, "endpoint_url"))
        .map(str::to_string);
    let ignore_endpoint_urls = match get("ignore_configured_endpoint_urls") {
        Some(v) => parse_bool("ignore_configured_endpoint_urls", &v)?,
        None => false,
    };
    Ok(Profile {
        name,
        credentials,
        process,
        unsupported,
        region: get("region"),
        endpoint_url: get("endpoint_url"),
        s3_endpoint_url,
        ignore_endpoint_urls,
        ca_bundle: get("ca_bundle"),
        max_attempts: get("max_attempts"),
        config_file: shown(&config_path),
        files: format!("{} or {}", shown(&creds_path), shown(&config_path)),
    })
}

#[cfg(test)]
mod tests {
    use super::{load, StaticCredentials};
    use crate::ConfigError;
    use std::collections::HashMap;
    use std::path::Path;

    /// Write the two files into `dir` and read the profile with `vars` as the environment.
    fn profile(
        dir: &Path,
        credentials: &str,
        config: &str,
        vars: &[(&str, &str)],
    ) -> Result<super::Profile, ConfigError> {
        std::fs::write(dir.join("credentials"), credentials).unwrap();
        std::fs::write(dir.join("config"), config).unwrap();
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert(
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            dir.join("credentials").display().to_string(),
        );
        env.insert(
            "AWS_CONFIG_FILE".into(),
            dir.join("config").display().to_string(),
        );
        load(&|k| env.get(k).cloned())
    }

    fn creds(id: &str, secret: &str, token: Option<&str>) -> Option<StaticCredentials> {
        Some(StaticCredentials {
            key_id: id.into(),
            secret: secret.into(),
            token: token.map(str::to_string),
        })
    }

    #[test]
    fn reads_named_profile_from_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(
            dir.path(),
            "[default]\naws_access_key_id = A\naws_secret_access_key = B\n[ops]\naws_access_key_id = C\naws_secret_access_key = D\naws_session_token = T\n",
            "[profile ops]\nregion = eu-west-1\nendpoint_url = http://minio:9000\n",
            &[("AWS_PROFILE", "ops")],
        )
        .unwrap();
        assert_eq!(p.credentials, creds("C", "D", Some("T")));
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
        assert_eq!(p.endpoint_url.as_deref(), Some("http://minio:9000"));
    }

    #[test]
    fn credentials_file_wins_over_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            "[default]\naws_access_key_id = CFG\naws_secret_access_key = CS\nregion = ap-south-1\n";
        let p = profile(
            dir.path(),
            "[default]\naws_access_key_id = CRED\naws_secret_access_key = S\n",
            config,
            &[],
        )
        .unwrap();
        assert_eq!(p.credentials, creds("CRED", "S", None));
        let p = profile(dir.path(), "", config, &[]).unwrap();
        assert_eq!(p.credentials, creds("CFG", "CS", None));
        assert_eq!(p.region.as_deref(), Some("ap-south-1"));
    }

    #[test]
    fn services_section_gives_the_s3_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let config = "[profile ops]\nservices = local\n\n[services local]\ndynamodb =\n  endpoint_url = http://dynamo:8000\ns3 =\n  addressing_style = path\n  endpoint_url = http://minio:9000\n";
        let p = profile(dir.path(), "", config, &[("AWS_PROFILE", "ops")]).unwrap();
        assert_eq!(p.s3_endpoint_url.as_deref(), Some("http://minio:9000"));
        assert_eq!(p.endpoint_url, None);
    }

    #[test]
    fn missing_profile_and_half_credentials_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = profile(
            dir.path(),
            "[a]\n",
            "[profile b]\n",
            &[("AWS_PROFILE", "c")],
        );
        assert!(matches!(e, Err(ConfigError::NoSuchProfile { .. })), "{e:?}");
        // No profile at all is fine when none was asked for.
        let p = profile(dir.path(), "", "", &[]).unwrap();
        assert!(p.credentials.is_none() && p.region.is_none());
        let e = profile(dir.path(), "[default]\naws_access_key_id = A\n", "", &[]);
        assert!(matches!(e, Err(ConfigError::MissingSecret { .. })), "{e:?}");
    }

    #[test]
    fn malformed_file_is_an_error_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let e = profile(
            dir.path(),
            "[default\naws_secret_access_key = SECRETVALUE\n",
            "",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line"), "{e}");
        assert!(!e.contains("SECRETVALUE"), "{e}");
    }
}
