//! Credentials from a profile's `credential_process`, as the AWS CLI and SDKs read it: the
//! command line is split into words as a shell would (no shell runs it), run with no input,
//! and prints one JSON object: `{"Version": 1, "AccessKeyId": …, "SecretAccessKey": …,
//! "SessionToken": …, "Expiration": "2026-12-06T18:00:00Z"}` (the last two optional). The
//! credentials are kept until five minutes before they expire (for good, without
//! `Expiration`), then the command runs again; one run at a time.
//!
//! Through it, anything the AWS CLI can sign in with (SSO, assumed roles) reaches cairn:
//! `credential_process = aws configure export-credentials --profile NAME --format process`.
//! Messages name the profile and the program, never its arguments or what it printed on
//! stdout (the credentials); when it fails, up to 500 characters of its stderr are quoted.

use chrono::{DateTime, Utc};
use object_store::aws::AwsCredential;
use object_store::CredentialProvider;
use serde::Deserialize;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long the command may take (it gets no input, so it cannot be waiting for a person).
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// How long before they expire credentials are fetched again.
const REFRESH_BEFORE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A provider running a profile's `credential_process`.
#[derive(Debug)]
pub(crate) struct ProcessCredentials {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    command: String,
    /// The profile and file naming the command, for messages.
    given_by: String,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    credential: Arc<AwsCredential>,
    expires: Option<DateTime<Utc>>,
}

impl Cached {
    fn fresh(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_none_or(|e| now + REFRESH_BEFORE < e)
    }
}

/// What the command prints (the AWS CLI's format, version 1).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Printed {
    version: u32,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expiration: Option<String>,
}

impl ProcessCredentials {
    /// A provider running `command`, named by `given_by` in messages.
    pub(crate) fn new(command: String, given_by: String) -> ProcessCredentials {
        ProcessCredentials {
            inner: Arc::new(Inner {
                command,
                given_by,
                cached: Mutex::new(None),
            }),
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for ProcessCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        if let Some(c) = self.inner.cached_fresh() {
            return Ok(c);
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.get())
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(failed)
    }
}

fn failed(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: message.into(),
    }
}

impl Inner {
    fn cached_fresh(&self) -> Option<Arc<AwsCredential>> {
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|c| c.fresh(Utc::now()))
            .map(|c| c.credential.clone())
    }

    /// The credentials, running the command if those held are (nearly) expired. The lock is
    /// held while it runs: requests waiting meanwhile take what it printed.
    fn get(&self) -> Result<Arc<AwsCredential>, String> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cached.as_ref().filter(|c| c.fresh(Utc::now())) {
            return Ok(c.credential.clone());
        }
        let c = self.run()?;
        let credential = c.credential.clone();
        *cached = Some(c);
        Ok(credential)
    }

    fn run(&self) -> Result<Cached, String> {
        let words = shlex::split(&self.command).unwrap_or_default();
        let Some((program, args)) = words.split_first() else {
            return Err(format!(
                "the {} is not a command line (empty, or a quote left open)",
                self.given_by
            ));
        };
        let what = format!("{} ({program})", self.given_by);
        let out = output_within(Command::new(program).args(args), GIVE_UP_AFTER)
            .map_err(|e| format!("the {what} {e}"))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            let said: String = said.trim().chars().take(500).collect();
            return Err(format!(
                "the {what} failed ({}){}; run it yourself to see why (an expired sign-in, say)",
                out.status,
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ));
        }
        let printed: Printed = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "the {what} printed no credentials in the AWS format (one JSON object with Version 1, AccessKeyId, SecretAccessKey, optional SessionToken and Expiration): {}",
                json_problem(&e)
            )
        })?;
        if printed.version != 1 {
            return Err(format!(
                "the {what} printed credentials of Version {}; only Version 1 exists",
                printed.version
            ));
        }
        let expires = printed
            .expiration
            .map(|e| {
                DateTime::parse_from_rfc3339(&e)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        format!(
                            "the {what} printed an Expiration that is not an RFC 3339 time: {e:?}"
                        )
                    })
            })
            .transpose()?;
        Ok(Cached {
            credential: Arc::new(AwsCredential {
                key_id: printed.access_key_id,
                secret_key: printed.secret_access_key,
                token: printed.session_token,
            }),
            expires,
        })
    }
}

/// Run `cmd` with no input, its output collected; killed after `limit`. The error says what
/// happened ("could not be run: …", "did not finish within …").
fn output_within(cmd: &mut Command, limit: Duration) -> Result<std::process::Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not be run: {e}"))?;
    // Read on threads, so that a command printing more than a pipe holds is not blocked.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(1 << 20).read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not finish within {} s and was stopped",
                    limit.as_secs_f32()
                ));
            }
            Err(e) => return Err(format!("could not be waited for: {e}")),
        }
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// What is wrong with JSON that did not parse, without its position or any text of it.
fn json_problem(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "it could not be read",
        serde_json::error::Category::Syntax => "it is not JSON",
        serde_json::error::Category::Data => "a field is missing or of the wrong type",
        serde_json::error::Category::Eof => "it ends too early (or is empty)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A script printing `body` and counting its runs in `runs`.
    fn script(dir: &std::path::Path, body: &str) -> (String, std::path::PathBuf) {
        let dir = tempfile::tempdir_in(dir).unwrap().keep();
        let runs = dir.join("runs");
        let path = dir.join("creds.sh");
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho run >> '{}'\n{body}\n", runs.display()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (format!("'{}' --flag secret-arg", path.display()), runs)
    }

    fn runs(path: &std::path::Path) -> usize {
        std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
    }

    fn provider(command: String) -> ProcessCredentials {
        ProcessCredentials::new(command, "credential_process of profile p".into())
    }

    fn get(p: &ProcessCredentials) -> object_store::Result<Arc<AwsCredential>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(p.get_credential())
    }

    #[test]
    fn credentials_are_kept_until_they_near_their_expiration() {
        let dir = tempfile::tempdir().unwrap();
        let later = (Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
        let (cmd, count) = script(
            dir.path(),
            &format!(
                r#"echo '{{"Version": 1, "AccessKeyId": "AK", "SecretAccessKey": "SK", "SessionToken": "T", "Expiration": "{later}"}}'"#
            ),
        );
        let p = provider(cmd);
        let c = get(&p).unwrap();
        assert_eq!((c.key_id.as_str(), c.secret_key.as_str()), ("AK", "SK"));
        assert_eq!(c.token.as_deref(), Some("T"));
        get(&p).unwrap();
        assert_eq!(runs(&count), 1, "held, not fetched again");
        // Expiring within five minutes: fetched for every request.
        let soon = (Utc::now() + chrono::TimeDelta::minutes(2)).to_rfc3339();
        let (cmd, count) = script(
            dir.path(),
            &format!(
                r#"echo '{{"Version": 1, "AccessKeyId": "AK", "SecretAccessKey": "SK", "Expiration": "{soon}"}}'"#
            ),
        );
        let p = provider(cmd);
        get(&p).unwrap();
        get(&p).unwrap();
        assert_eq!(runs(&count), 2);
        // No Expiration: held for good.
        let (cmd, count) = script(
            dir.path(),
            r#"echo '{"Version": 1, "AccessKeyId": "AK", "SecretAccessKey": "SK"}'"#,
        );
        let p = provider(cmd);
        get(&p).unwrap();
        get(&p).unwrap();
        assert_eq!(runs(&count), 1);
    }

    #[test]
    fn failures_name_the_profile_and_program_never_arguments_or_output() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("echo 'sign-in expired' >&2; exit 3", "sign-in expired"),
            ("echo 'AKIASECRETOUTPUT not json'", "not json"),
            (
                r#"echo '{"Version": 2, "AccessKeyId": "AKIASECRETOUTPUT", "SecretAccessKey": "x"}'"#,
                "version 2",
            ),
            (
                r#"echo '{"Version": 1, "AccessKeyId": "AKIASECRETOUTPUT"}'"#,
                "missing",
            ),
            (
                r#"echo '{"Version": 1, "AccessKeyId": "A", "SecretAccessKey": "S", "Expiration": "soon"}'"#,
                "rfc 3339",
            ),
        ];
        for (body, expect) in cases {
            let (cmd, _) = script(dir.path(), body);
            let e = get(&provider(cmd)).unwrap_err().to_string();
            let lower = e.to_lowercase();
            assert!(lower.contains(expect), "{e}");
            assert!(e.contains("profile p") && e.contains("creds.sh"), "{e}");
            assert!(
                !e.contains("secret-arg") && !e.contains("AKIASECRETOUTPUT"),
                "{e}"
            );
        }
        let e =
            output_within(Command::new("sleep").arg("10"), Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("did not finish within"), "{e}");
        let e = get(&provider("/nonexistent/helper".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("could not be run"), "{e}");
        let e = get(&provider("'unclosed".into())).unwrap_err().to_string();
        assert!(e.contains("not a command line"), "{e}");
    }
}
