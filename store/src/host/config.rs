//! User presets from cairn's configuration file (`cairn.toml`): the `[presets.NAME]` tables.
//! Only that table is read here; every other table of the file belongs to other features and
//! is left alone.
//!
//! ```toml
//! [presets.ocp4-cp-site]
//! extends = "ocp4-control-plane"   # start from this preset's paths and markers
//! paths = ["/etc/site/ca", "/opt/agent/etc"]
//! markers = ["/etc/site/role-control-plane"]   # replaces the markers it extends
//! description = "control planes of site A"
//! ```

use super::presets::{builtin, Preset, GLOB_CHARS};
use super::HostError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the configuration file is read from when none is named.
pub const DEFAULT_PATH: &str = "/etc/cairn/cairn.toml";

/// The part of the file this module reads.
#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    presets: BTreeMap<String, UserPreset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPreset {
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    markers: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
}

/// Longest chain of `extends`.
const MAX_EXTENDS: usize = 16;

/// The built-in presets and those of the configuration file: `path` if given (it must then
/// exist), else [`DEFAULT_PATH`] when it exists.
pub fn load(path: Option<&Path>) -> Result<Vec<Preset>, HostError> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(builtin());
        }
        Err(cause) => return Err(HostError::ConfigRead { path, cause }),
    };
    parse(&text, &path.display().to_string())
}

/// The built-in presets plus those defined in `text` (a cairn.toml named `origin`).
pub fn parse(text: &str, origin: &str) -> Result<Vec<Preset>, HostError> {
    let file: File = toml::from_str(text).map_err(|e| HostError::Config {
        origin: origin.into(),
        cause: e.to_string(),
    })?;
    let mut all = builtin();
    let bad = |name: &str, cause: String| HostError::Config {
        origin: origin.into(),
        cause: format!("preset {name}: {cause}"),
    };
    for name in file.presets.keys() {
        if name.is_empty() || name == "auto" || name.chars().any(|c| c.is_whitespace() || c == ',')
        {
            return Err(bad(name, "not a usable preset name".into()));
        }
    }
    for name in file.presets.keys() {
        let mut chain = vec![name.as_str()];
        let mut cur = &file.presets[name];
        let mut base: Option<Preset> = None;
        while let Some(parent) = &cur.extends {
            if chain.len() > MAX_EXTENDS || chain.contains(&parent.as_str()) {
                return Err(bad(
                    name,
                    format!("extends chain loops: {}", chain.join(" → ")),
                ));
            }
            chain.push(parent);
            match file.presets.get(parent) {
                Some(p) => cur = p,
                None => {
                    base = Some(
                        builtin()
                            .into_iter()
                            .find(|b| &b.name == parent)
                            .ok_or_else(|| {
                                bad(
                                    name,
                                    format!(
                                        "extends {parent:?}, which is neither built in nor \
                                         defined in the file (see `cairn presets list`)"
                                    ),
                                )
                            })?,
                    );
                    break;
                }
            }
        }
        // Resolve from the base outwards: paths accumulate, markers are replaced.
        let mut preset = base.unwrap_or_else(|| Preset {
            name: String::new(),
            description: String::new(),
            paths: Vec::new(),
            markers: Vec::new(),
            origin: String::new(),
        });
        for link in chain.iter().rev() {
            let Some(u) = file.presets.get(*link) else {
                continue;
            };
            for p in &u.paths {
                if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
                    return Err(bad(name, format!("path {p:?} is not absolute")));
                }
                let (dir, _) = p.rsplit_once('/').unwrap_or_default();
                if dir.contains(GLOB_CHARS) {
                    return Err(bad(
                        name,
                        format!(
                            "path {p:?} has a glob before its last component; only the last \
                             component may be one (name each directory, or the parent directory)"
                        ),
                    ));
                }
                if !preset.paths.contains(p) {
                    preset.paths.push(p.clone());
                }
            }
            if let Some(m) = &u.markers {
                if let Some(bad_m) = m.iter().find(|m| !m.starts_with('/')) {
                    return Err(bad(name, format!("marker {bad_m:?} is not absolute")));
                }
                if let Some(bad_m) = m.iter().find(|m| m.contains(GLOB_CHARS)) {
                    return Err(bad(
                        name,
                        format!("marker {bad_m:?} is a glob; markers are paths that must exist"),
                    ));
                }
                preset.markers = m.clone();
            }
            if let Some(d) = &u.description {
                preset.description = d.clone();
            }
        }
        if preset.paths.is_empty() {
            return Err(bad(name, "has no paths (give `paths` or `extends`)".into()));
        }
        if let Some(parent) = &file.presets[name].extends {
            if file.presets[name].description.is_none() {
                preset.description = format!("{parent} extended by {origin}");
            }
        }
        preset.name = name.clone();
        preset.origin = origin.into();
        // A preset of the file named like a built-in one replaces it.
        all.retain(|p| p.name != preset.name);
        all.push(preset);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_adds_paths_and_replaces_markers() {
        let all = parse(
            r#"
[jobs.nightly]
schedule = "daily"

[presets.site-cp]
extends = "ocp4-control-plane"
paths = ["/etc/site"]
markers = ["/etc/site/cp"]

[presets.site-cp2]
extends = "site-cp"
paths = ["/opt/agent"]
"#,
            "cairn.toml",
        )
        .unwrap();
        let cp2 = all.iter().find(|p| p.name == "site-cp2").unwrap();
        assert!(cp2.paths.contains(&"/etc/kubernetes".to_string()));
        assert!(cp2.paths.contains(&"/etc/site".to_string()));
        assert!(cp2.paths.contains(&"/opt/agent".to_string()));
        assert_eq!(cp2.markers, ["/etc/site/cp"]);
        assert_eq!(cp2.origin, "cairn.toml");
        assert!(all.iter().any(|p| p.name == "ocp3-node"));
    }

    #[test]
    fn refuses_loops_unknown_bases_relative_paths_and_inner_globs() {
        for (text, want) in [
            (
                "[presets.a]\nextends = \"b\"\n[presets.b]\nextends = \"a\"\n",
                "loops",
            ),
            ("[presets.a]\nextends = \"nope\"\n", "neither built in"),
            ("[presets.a]\npaths = [\"etc/x\"]\n", "not absolute"),
            ("[presets.a]\nmarkers = [\"/x\"]\n", "no paths"),
            ("[presets.a]\npath = [\"/x\"]\n", "unknown field"),
            ("[presets.auto]\npaths = [\"/x\"]\n", "not a usable"),
            (
                "[presets.a]\npaths = [\"/etc/*/conf\"]\n",
                "glob before its last component",
            ),
            (
                "[presets.a]\npaths = [\"/x\"]\nmarkers = [\"/etc/a*\"]\n",
                "is a glob",
            ),
        ] {
            let err = parse(text, "f.toml").unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
