//! Credentials from the AWS shared files (`~/.aws/credentials`, `~/.aws/config`), for the
//! profile named by `AWS_PROFILE` (default `default`), as the AWS CLI reads them. object_store
//! reads the environment, web identity (IRSA pods) and instance metadata itself.

use ini::Ini;
use std::path::PathBuf;

/// Static credentials of one profile.
pub struct Profile {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never printed).
    pub secret_access_key: String,
    /// Session token, for temporary credentials.
    pub session_token: Option<String>,
    /// Region from the config file.
    pub region: Option<String>,
}

fn home_file(env: &str, name: &str) -> Option<PathBuf> {
    std::env::var_os(env)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws").join(name)))
}

/// The profile's static credentials, if the shared files hold them.
pub fn load() -> Option<Profile> {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let creds =
        Ini::load_from_file(home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")?).ok()?;
    let section = creds.section(Some(profile.as_str()))?;
    let get = |k: &str| section.get(k).map(str::to_string);
    let region = home_file("AWS_CONFIG_FILE", "config")
        .and_then(|p| Ini::load_from_file(p).ok())
        .and_then(|cfg| {
            let name = if profile == "default" {
                "default".to_string()
            } else {
                format!("profile {profile}")
            };
            cfg.section(Some(name))
                .and_then(|s| s.get("region"))
                .map(str::to_string)
        });
    Some(Profile {
        access_key_id: get("aws_access_key_id")?,
        secret_access_key: get("aws_secret_access_key")?,
        session_token: get("aws_session_token"),
        region,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_named_profile_and_region() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = A\naws_secret_access_key = B\n[ops]\naws_access_key_id = C\naws_secret_access_key = D\naws_session_token = T\n",
        )
        .unwrap();
        std::fs::write(&config, "[profile ops]\nregion = eu-west-1\n").unwrap();
        // SAFETY: this test is the only one in the crate touching these variables.
        unsafe {
            std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &creds);
            std::env::set_var("AWS_CONFIG_FILE", &config);
            std::env::set_var("AWS_PROFILE", "ops");
        }
        let p = super::load().unwrap();
        assert_eq!(p.access_key_id, "C");
        assert_eq!(p.secret_access_key, "D");
        assert_eq!(p.session_token.as_deref(), Some("T"));
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
    }
}
