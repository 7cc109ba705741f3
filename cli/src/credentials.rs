//! Turning `--repo`, `--identity`, `--key` and `--passphrase-file` into an open repository.

use crate::args::Global;
use crate::exit::usage;
use crate::hints;
use anyhow::{bail, Context, Result};
use cairn_store::{backend, Credentials, Repository};
use std::fs;
use std::path::{Path, PathBuf};

/// The repository location, or a helpful error.
pub fn location(g: &Global) -> Result<&str> {
    g.repo.as_deref().filter(|r| !r.is_empty()).ok_or_else(|| {
        usage(
            "no repository given",
            "pass --repo PATH (or s3://BUCKET/PREFIX), or set CAIRN_REPO",
        )
    })
}

/// Read an age identity file. Never prints its content.
pub fn read_identity_file(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let text =
        fs::read(path).with_context(|| format!("reading identity file {}", path.display()))?;
    let file = age::IdentityFile::from_buffer(&text[..]).map_err(|_| {
        anyhow::anyhow!(
            "{} is not an age identity file (expected AGE-SECRET-KEY-1… lines, as written by `cairn key generate` or `age-keygen`)",
            path.display()
        )
    })?;
    let ids = file
        .into_identities()
        .map_err(|e| anyhow::anyhow!("identity file {}: {e}", path.display()))?;
    if ids.is_empty() {
        bail!("identity file {} holds no identity", path.display());
    }
    Ok(ids)
}

/// The entries of a list file (recipients, excludes): one per line, blank lines and `#`
/// comments skipped.
pub fn read_list_file(path: &Path, what: &str) -> Result<Vec<String>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading {what} file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// The recipients given with `--recipient` and `--recipients-file`, refusing SSH and plugin
/// recipients (cairn encrypts to X25519 recipients only).
pub fn recipients(given: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    for r in given {
        hints::check_recipient(r, "--recipient")?;
    }
    let mut out = given.to_vec();
    for f in files {
        for r in read_list_file(f, "recipients")? {
            hints::check_recipient(&r, &format!("recipients file {}", f.display()))?;
            out.push(r);
        }
    }
    Ok(out)
}

/// Read the first line of a passphrase file.
pub fn read_passphrase(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading passphrase file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        bail!("passphrase file {} is empty", path.display());
    }
    Ok(line)
}

/// Which credentials were given, strongest first: identity, passphrase, write key.
pub fn credentials(g: &Global) -> Result<Credentials> {
    if let (Some(i), Some(p)) = (&g.identity, &g.passphrase_file) {
        return Err(crate::exit::usage(
            format!(
                "both --identity {} and --passphrase-file {} were given",
                i.display(),
                p.display()
            ),
            "give one of them (check CAIRN_IDENTITY and CAIRN_PASSPHRASE_FILE in the environment)",
        ));
    }
    if let Some(path) = &g.identity {
        hints::warn_if_exposed(path, "identity file");
        return Ok(Credentials::Identities(read_identity_file(path)?));
    }
    if let Some(path) = &g.passphrase_file {
        hints::warn_if_exposed(path, "passphrase file");
        return Ok(Credentials::Passphrase(read_passphrase(path)?));
    }
    if let Some(path) = &g.key {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading write key {}", path.display()))?;
        hints::check_write_key_text(path, &text)?;
        hints::warn_if_exposed(path, "write key");
        let rec = cairn_format::keys::write_key_from_text(&text)
            .with_context(|| format!("{} is not a cairn write key", path.display()))?;
        return Ok(Credentials::WriteKey(rec));
    }
    Err(usage(
        "no key given",
        "pass --identity FILE (CAIRN_IDENTITY), --passphrase-file FILE (CAIRN_PASSPHRASE_FILE) or --key WRITEKEY (CAIRN_KEY)",
    ))
}

/// The label of the write key the repository is opened with, if it has one (an identity or
/// passphrase given as well takes precedence: then there is none).
pub fn write_key_label(g: &Global) -> Result<Option<String>> {
    match (&g.identity, &g.passphrase_file, &g.key) {
        (None, None, Some(path)) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("reading write key {}", path.display()))?;
            Ok(cairn_format::keys::write_key_label(&text)
                .with_context(|| format!("write key {}", path.display()))?)
        }
        _ => Ok(None),
    }
}

/// The backend of the repository named in `g`, without opening the repository.
pub fn backend(g: &Global) -> Result<Box<dyn backend::Backend>> {
    Ok(backend::open(location(g)?, &g.s3.options())?)
}

/// Open the repository named in `g` with the credentials in `g`, caching metadata of a
/// remote repository unless `--no-cache`; as of `--as-of` if given.
pub fn open(g: &Global) -> Result<Repository> {
    open_source_at(g, location(g)?)
}

/// [`open`] without the metadata cache: for audits and repairs, which must see the
/// repository itself.
pub fn open_uncached(g: &Global) -> Result<Repository> {
    open_with(g, location(g)?, None, as_of(g)?)
}

/// Open the repository at `loc` with the credentials in `g`.
pub fn open_at(g: &Global, loc: &str) -> Result<Repository> {
    open_with(g, loc, cache_root(g).as_deref(), None)
}

/// [`open_at`] for a repository read from (copy's source): as of `--as-of` if given.
pub fn open_source_at(g: &Global, loc: &str) -> Result<Repository> {
    open_with(g, loc, cache_root(g).as_deref(), as_of(g)?)
}

/// `--as-of`, parsed.
fn as_of(g: &Global) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    g.as_of
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t.trim())
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| {
                    usage(
                        format!("--as-of {t:?} is not an RFC 3339 time ({e})"),
                        "write a time such as 2026-12-05T17:00:00Z",
                    )
                })
        })
        .transpose()
}

fn open_with(
    g: &Global,
    loc: &str,
    cache: Option<&Path>,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Repository> {
    let creds = credentials(g)?;
    let mut backend = backend::open(loc, &g.s3.options())?;
    if let Some(at) = as_of {
        backend = Box::new(
            backend::AsOfBackend::new(backend, at)
                .with_context(|| format!("reading repository {loc} as of {at}"))?,
        );
    }
    Repository::open_cached(backend, creds, cache)
        .with_context(|| format!("opening repository {loc}"))
}

/// The metadata cache directory: `--cache-dir`, else the user's cache directory; none with
/// `--no-cache` or when there is no home.
fn cache_root(g: &Global) -> Option<PathBuf> {
    if g.no_cache {
        return None;
    }
    g.cache_dir
        .clone()
        .or_else(|| dirs::cache_dir().map(|d| d.join("cairn")))
}

/// Write a secret file with mode 0600, refusing to replace an existing file; missing parent
/// directories are created with mode 0700. `-` writes to stdout.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(contents.as_bytes())
            .and_then(|()| out.flush())
            .map_err(crate::output::stdout_error);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating directory {}", dir.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
