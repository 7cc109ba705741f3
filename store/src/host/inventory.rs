//! The host inventory a host snapshot records: installed packages (rpm or dpkg, whichever the
//! host has), `/etc/os-release`, kernel release, hostname and, on OpenShift 4, the node's
//! current MachineConfig. Each is an ordinary file in the reserved directory
//! [`DIR`] of the snapshot tree (format/SPEC.md §10.2), deduplicated like any other.

use super::command::{find_in_path, CommandLine};
use super::presets::{resolve_in_root, under_root};
use super::{file_node, HostError};
use crate::saver::Saver;
use cairn_format::chunker::ChunkPolicy;
use cairn_format::tree::Node;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Where the inventory lives in a snapshot tree.
pub const DIR: &str = "/.cairn/inventory";
/// Its components below the root.
pub const DIR_COMPONENTS: [&[u8]; 2] = [b".cairn", b"inventory"];

/// File names in [`DIR`].
pub const PACKAGES: &str = "packages.tsv";
/// A copy of the host's os-release.
pub const OS_RELEASE: &str = "os-release";
/// Kernel release (`uname -r`), one line.
pub const KERNEL: &str = "kernel";
/// Host name (`uname -n`), one line.
pub const HOSTNAME: &str = "hostname";
/// The MachineConfig the node runs (OpenShift 4).
pub const MACHINECONFIG: &str = "machineconfig.json";
/// Which package manager wrote packages.tsv (`rpm` or `dpkg`), one line.
pub const PACKAGE_MANAGER: &str = "package-manager";

/// Where the MachineConfig Daemon keeps the node's current configuration.
pub const MCD_CURRENT: &str = "/etc/machine-config-daemon/currentconfig";

/// Most bytes of a small inventory file read into memory (os-release, kernel, …).
pub const SMALL_LIMIT: u64 = 1 << 20;
/// Most bytes of a package list read into memory (for comparison).
pub const PACKAGES_LIMIT: u64 = 8 << 20;

/// The package managers cairn asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    /// `rpm -qa`.
    Rpm,
    /// `dpkg-query -W`.
    Dpkg,
}

/// rpm databases below a host root, in the order looked for: Fedora's and RHEL 10's, the
/// classic one, and rpm-ostree's (RHCOS, Fedora CoreOS; `/var/lib/rpm` links to it there).
const RPM_DIRS: [&str; 3] = ["/usr/lib/sysimage/rpm", "/var/lib/rpm", "/usr/share/rpm"];
/// Files that make a directory an rpm database: sqlite (RHEL 9), Berkeley DB (RHEL 7, 8), ndb.
const RPM_FILES: [&str; 3] = ["rpmdb.sqlite", "Packages", "Packages.db"];
/// dpkg's database directory.
const DPKG_DIR: &str = "/var/lib/dpkg";

/// A host's installed packages, as the inventory records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packages {
    /// The package manager that listed them.
    pub manager: PackageManager,
    /// `NAME\tVERSION\tARCH` lines.
    pub lines: Vec<u8>,
}

impl Packages {
    /// The installed packages of the host below `root` (at most `limit` bytes of listing), or
    /// why none can be listed. A package manager that fails is an error.
    ///
    /// For `/`, the manager found in PATH lists its own database: dpkg where its database is
    /// (a Debian or Ubuntu host may have an `rpm` binary, with no packages in its database),
    /// else rpm first. Below another root (a mounted image, a rescue system's /mnt/sysimage),
    /// the database found there ([`DPKG_DIR`], else the first of [`RPM_DIRS`]) is copied, its
    /// files opened inside the root, into a private directory that this system's dpkg-query or
    /// rpm lists: never the running system's packages, and nothing is written below the root
    /// (rpm's sqlite adds files beside a database it opens; a read-only image could not be
    /// read). A database that lists no installed package (a format this rpm cannot read, an
    /// empty status file) is passed over for the next.
    pub fn of(root: &Path, limit: u64) -> Result<Result<Packages, String>, HostError> {
        if root == Path::new("/") {
            let (rpm, dpkg) = (find_in_path("rpm"), find_in_path("dpkg-query"));
            let dpkg_db = Path::new(DPKG_DIR).join("status").is_file();
            let manager = match (rpm, dpkg) {
                (_, Some(_)) if dpkg_db => PackageManager::Dpkg,
                (Some(_), _) => PackageManager::Rpm,
                (None, Some(_)) => PackageManager::Dpkg,
                (None, None) => return Ok(Err("neither rpm nor dpkg-query is in PATH".into())),
            };
            return Ok(Ok(Packages {
                manager,
                lines: manager.list(None, limit)?,
            }));
        }
        let mut found: Vec<(PackageManager, String, Vec<String>)> = Vec::new();
        if open_in_root(root, &format!("{DPKG_DIR}/status")).is_ok() {
            let updates = file_in_root(root, &format!("{DPKG_DIR}/updates"));
            let mut files = vec!["status".to_string()];
            files.extend(
                db_files(root, &updates, is_dpkg_update)
                    .into_iter()
                    .map(|n| format!("updates/{n}")),
            );
            found.push((PackageManager::Dpkg, DPKG_DIR.into(), files));
        }
        if let Some((dir, files)) = rpm_db(root) {
            found.push((PackageManager::Rpm, dir, files));
        }
        if found.is_empty() {
            return Ok(Err(format!(
                "no package database below {} ({DPKG_DIR}/status, or an rpm database in {})",
                root.display(),
                RPM_DIRS.join(", ")
            )));
        }
        let mut passed = Vec::new();
        for (manager, dir, files) in found {
            let shown = under_root(root, &dir);
            if find_in_path(manager.program()).is_none() {
                passed.push(format!(
                    "{} holds a {} database but {} is not in PATH",
                    shown.display(),
                    manager.name(),
                    manager.program()
                ));
                continue;
            }
            let copy = private_copy(root, &dir, &files)?;
            let lines = manager.list(Some(copy.path()), limit).map_err(|e| {
                HostError::Invalid(format!(
                    "listing the {} database at {} (from a private copy): {e}\n(a damaged \
                     database, or one this {} cannot read; `backup host --no-inventory` backs \
                     up without the inventory)",
                    manager.name(),
                    shown.display(),
                    manager.program()
                ))
            })?;
            if lines.is_empty() {
                passed.push(format!(
                    "{} lists no installed package from {} (a database format it cannot read?)",
                    manager.program(),
                    shown.display()
                ));
                continue;
            }
            return Ok(Ok(Packages { manager, lines }));
        }
        Ok(Err(passed.join("; ")))
    }
}

/// The first rpm database below `root`: its directory as the host names it (symlinks
/// resolved inside `root`) and its regular files.
fn rpm_db(root: &Path) -> Option<(String, Vec<String>)> {
    RPM_DIRS.iter().find_map(|dir| {
        let dir = file_in_root(root, dir);
        if !RPM_FILES
            .iter()
            .any(|f| open_in_root(root, &format!("{dir}/{f}")).is_ok())
        {
            return None;
        }
        let files = db_files(root, &dir, is_rpm_file);
        Some((dir, files))
    })
}

/// The names in `dir` below `root` that `wanted` accepts, sorted; none unless `dir` is a
/// directory there (not a link left unresolved, which would lead out of the root).
fn db_files(root: &Path, dir: &str, wanted: fn(&str) -> bool) -> Vec<String> {
    let at = under_root(root, dir);
    if !std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
        return Vec::new();
    }
    let mut files: Vec<String> = std::fs::read_dir(at)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| wanted(n))
        .collect();
    files.sort();
    files
}

/// Files of an rpm database: sqlite's and its write-ahead log, ndb's, and Berkeley DB's
/// (`Packages` and its indexes, `Name`, `Basenames`, …: letters only). Backups, locks and
/// the Berkeley DB environment (`__db.001`) are left out.
fn is_rpm_file(name: &str) -> bool {
    matches!(
        name,
        "rpmdb.sqlite" | "rpmdb.sqlite-wal" | "Packages.db" | "Index.db"
    ) || (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// dpkg's journal of status changes not yet merged into `status` (`updates/0001`, …).
fn is_dpkg_update(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// A private copy of the database files `files` of `dir` below `root` (names relative to
/// `dir`), each opened inside the root (one that is not a regular file there is left out), in
/// a temporary directory removed when dropped.
fn private_copy(root: &Path, dir: &str, files: &[String]) -> Result<tempfile::TempDir, HostError> {
    let tmp = std::env::temp_dir();
    let no_copy = |cause: std::io::Error| {
        HostError::Invalid(format!(
            "copying the package database below {} into {} (TMPDIR): {cause}; point TMPDIR at a \
             writable directory with room for it, or back up with --no-inventory",
            root.display(),
            tmp.display()
        ))
    };
    let copy = tempfile::Builder::new()
        .prefix("cairn-packages-")
        .tempdir()
        .map_err(no_copy)?;
    let mut buf = vec![0u8; 1 << 16];
    for name in files {
        let Ok(mut from) = open_in_root(root, &format!("{dir}/{name}")) else {
            continue;
        };
        let to = copy.path().join(name);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(no_copy)?;
        }
        let mut out = std::fs::File::create(&to).map_err(no_copy)?;
        // By hand rather than io::copy: a read fails on the root, a write on TMPDIR.
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(cause) => {
                    return Err(HostError::File {
                        path: under_root(root, &format!("{dir}/{name}")),
                        cause,
                    })
                }
            };
            out.write_all(&buf[..n]).map_err(no_copy)?;
        }
    }
    Ok(copy)
}

impl PackageManager {
    /// Its name, as packages.tsv's companion file records it.
    pub fn name(self) -> &'static str {
        match self {
            PackageManager::Rpm => "rpm",
            PackageManager::Dpkg => "dpkg",
        }
    }

    /// The program that lists its packages.
    fn program(self) -> &'static str {
        match self {
            PackageManager::Rpm => "rpm",
            PackageManager::Dpkg => "dpkg-query",
        }
    }

    /// The command listing installed packages as `NAME\tVERSION\tARCH` lines (dpkg's with the
    /// status first: see [`PackageManager::installed`]), from the database in `dir`
    /// (`rpm --dbpath`, `dpkg-query --admindir`) or the manager's own.
    pub fn command(self, dir: Option<&Path>) -> CommandLine {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(dir) = dir {
            let flag = match self {
                PackageManager::Rpm => "--dbpath",
                PackageManager::Dpkg => "--admindir",
            };
            args.extend([flag.into(), dir.into()]);
        }
        let listing = match self {
            PackageManager::Rpm => [
                "-qa",
                "--qf",
                "%{NAME}\\t%{EPOCH}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n",
            ],
            // With the status: dpkg lists removed packages whose configuration files are
            // left (`rc`) as well; `installed` drops them.
            PackageManager::Dpkg => [
                "-W",
                "-f",
                "${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n",
            ],
        };
        args.extend(listing.map(Into::into));
        CommandLine::new(self.program(), args)
    }

    /// The installed packages of the database in `dir` (see [`PackageManager::command`]), at
    /// most `limit` bytes of listing.
    fn list(self, dir: Option<&Path>, limit: u64) -> Result<Vec<u8>, HostError> {
        Ok(self.installed(&self.command(dir).output(limit)?))
    }

    /// The `NAME\tVERSION\tARCH` lines of the installed packages in `output` (of
    /// [`PackageManager::command`]).
    pub fn installed(self, output: &[u8]) -> Vec<u8> {
        if self == PackageManager::Rpm {
            return output.to_vec();
        }
        let mut out = Vec::with_capacity(output.len());
        for line in output.split(|b| *b == b'\n') {
            let Some(tab) = line.iter().position(|b| *b == b'\t') else {
                continue;
            };
            // The second letter of the status: installed, or installed with triggers due.
            if matches!(line[..tab].get(1), Some(b'i' | b't' | b'W')) {
                out.extend_from_slice(&line[tab + 1..]);
                out.push(b'\n');
            }
        }
        out
    }
}

/// The kernel release and host name of the running system.
pub fn uname() -> (String, String) {
    let u = rustix::system::uname();
    (
        u.release().to_string_lossy().into_owned(),
        u.nodename().to_string_lossy().into_owned(),
    )
}

/// Open `path` (absolute, as the host names it) below `root` as if `root` were `/`: its
/// symlinks, absolute ones included, resolve inside `root` (an image mounted at ROOT whose
/// /etc/os-release links to /usr/lib/os-release reads the image's, never the running
/// host's). On kernels without openat2 (before 5.6), the links are followed inside `root`
/// by hand, as [`resolve_in_root`] resolves them. Only regular files are opened.
pub fn open_in_root(root: &Path, path: &str) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let dir = rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = match rustix::fs::openat2(
        &dir,
        path.trim_start_matches('/'),
        flags,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    ) {
        Ok(fd) => std::fs::File::from(fd),
        // Not blocking either: a FIFO is refused below, not waited on.
        Err(rustix::io::Errno::NOSYS) => std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_nonblock())
            .open(under_root(root, &file_in_root(root, path)))?,
        Err(e) => return Err(e.into()),
    };
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// `O_NONBLOCK`, for [`std::os::unix::fs::OpenOptionsExt::custom_flags`].
fn libc_nonblock() -> i32 {
    rustix::fs::OFlags::NONBLOCK.bits() as i32
}

/// `path` (absolute, as the host names it) with every link on the way resolved inside `root`:
/// the directories above as [`resolve_in_root`] resolves them, then the last component while
/// it is a link (an absolute target replaces the path). [`open_in_root`] by hand.
fn file_in_root(root: &Path, path: &str) -> String {
    let mut at = resolve_in_root(root, path);
    for _ in 0..8 {
        let Ok(target) = std::fs::read_link(under_root(root, &at)) else {
            break;
        };
        let parent = Path::new(&at).parent().unwrap_or(Path::new("/"));
        at = resolve_in_root(root, &parent.join(target).to_string_lossy());
    }
    at
}

/// The small file `path` below `root`, opened with [`open_in_root`] and read whole (at most
/// [`SMALL_LIMIT`] bytes); None when it cannot be opened there.
pub fn read_small_in_root(root: &Path, path: &str) -> Result<Option<Vec<u8>>, HostError> {
    let Ok(file) = open_in_root(root, path) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    file.take(SMALL_LIMIT)
        .read_to_end(&mut out)
        .map_err(|cause| HostError::File {
            path: under_root(root, path),
            cause,
        })?;
    Ok(Some(out))
}

/// The host's os-release below `root` (/etc/os-release, else /usr/lib/os-release), read
/// with [`read_small_in_root`]: its path as the host names it, and its bytes.
pub fn os_release(root: &Path) -> Result<Option<(&'static str, Vec<u8>)>, HostError> {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(text) = read_small_in_root(root, path)? {
            return Ok(Some((path, text)));
        }
    }
    Ok(None)
}

/// The inventory saved into a snapshot.
pub struct Saved {
    /// The files of [`DIR`], sorted.
    pub nodes: Vec<Node>,
    /// Facts for the snapshot (`inventory.*`).
    pub facts: Vec<(String, String)>,
    /// What could not be taken, for the user (the backup goes on without it).
    pub notes: Vec<String>,
}

/// Take the inventory of the running host (files below `root`) into `saver`. A package
/// manager that fails fails the inventory (the backup saves nothing); a host without rpm or
/// dpkg-query, or without a readable MachineConfig, is noted and goes on.
pub fn save(
    saver: &mut Saver,
    root: &Path,
    time_ns: i64,
    policy: ChunkPolicy,
) -> Result<Saved, HostError> {
    let mut nodes = Vec::new();
    let mut facts = Vec::new();
    let mut notes = Vec::new();
    let small = |saver: &mut Saver, name: &str, bytes: &[u8]| -> Result<Node, HostError> {
        let (ids, size) =
            saver
                .save_reader(bytes, policy, |_| {})?
                .map_err(|cause| HostError::Read {
                    command: name.into(),
                    cause,
                })?;
        Ok(file_node(name.as_bytes(), ids, size, time_ns))
    };
    // Within the bound `host compare` reads, so what is recorded can be compared.
    match Packages::of(root, PACKAGES_LIMIT)? {
        Ok(Packages {
            manager: pm,
            lines: list,
        }) => {
            let lines = list.iter().filter(|c| **c == b'\n').count();
            nodes.push(small(saver, PACKAGES, &list)?);
            nodes.push(small(
                saver,
                PACKAGE_MANAGER,
                format!("{}\n", pm.name()).as_bytes(),
            )?);
            facts.push(("inventory.package_manager".into(), pm.name().into()));
            facts.push(("inventory.packages".into(), lines.to_string()));
        }
        Err(why) => notes.push(format!("{why}: no package list recorded")),
    }
    match os_release(root)? {
        Some((_, text)) => {
            let os = parse_os_release(&String::from_utf8_lossy(&text));
            if let Some(pretty) = os.get("PRETTY_NAME") {
                facts.push(("inventory.os".into(), pretty.clone()));
            }
            nodes.push(small(saver, OS_RELEASE, &text)?);
        }
        None => notes.push(format!(
            "no os-release below {} (etc/os-release, usr/lib/os-release): OS release not recorded",
            root.display()
        )),
    }
    let (kernel, hostname) = uname();
    facts.push(("inventory.kernel".into(), kernel.clone()));
    nodes.push(small(saver, KERNEL, format!("{kernel}\n").as_bytes())?);
    nodes.push(small(saver, HOSTNAME, format!("{hostname}\n").as_bytes())?);
    let mcd = under_root(root, MCD_CURRENT);
    if std::fs::symlink_metadata(&mcd).is_ok() {
        match open_in_root(root, MCD_CURRENT) {
            Ok(f) => {
                let (ids, size) =
                    saver
                        .save_reader(f, policy, |_| {})?
                        .map_err(|cause| HostError::File {
                            path: mcd.clone(),
                            cause,
                        })?;
                nodes.push(file_node(MACHINECONFIG.as_bytes(), ids, size, time_ns));
                facts.push(("inventory.machineconfig".into(), "recorded".into()));
            }
            Err(e) => notes.push(format!(
                "{} not readable ({e}): MachineConfig not recorded",
                mcd.display()
            )),
        }
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Saved {
        nodes,
        facts,
        notes,
    })
}

/// `KEY=value` lines of an os-release file, quotes removed.
pub fn parse_os_release(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.replace("\\\"", "\"")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{file_in_root, open_in_root, os_release, under_root, PackageManager};

    #[test]
    fn absolute_symlinks_below_a_root_stay_in_it() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/os-release"), "ID=rhcos\n").unwrap();
        symlink("/usr/lib/os-release", root.join("etc/os-release")).unwrap();
        let (path, text) = os_release(&root).unwrap().unwrap();
        assert_eq!(
            (path, text.as_slice()),
            ("/etc/os-release", &b"ID=rhcos\n"[..])
        );
        // A link to a file outside the root names, inside it, nothing.
        std::fs::write(&outside, "secret").unwrap();
        symlink(&outside, root.join("etc/leak")).unwrap();
        assert!(open_in_root(&root, "/etc/leak").is_err());
        // By hand, as on kernels without openat2: the same file, inside the root.
        assert_eq!(
            file_in_root(&root, "/etc/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(file_in_root(&root, "/etc/leak"), outside.to_string_lossy());
        assert!(!under_root(&root, &file_in_root(&root, "/etc/leak")).exists());
    }

    #[test]
    fn dpkg_lists_only_installed_packages() {
        let out = b"ii \tadduser\t3.134\tall\nrc \told\t1\tamd64\nhi \theld\t2\tamd64\niW \ttrig\t1\tall\nun \tgone\t\t\n";
        assert_eq!(
            PackageManager::Dpkg.installed(out),
            b"adduser\t3.134\tall\nheld\t2\tamd64\ntrig\t1\tall\n"
        );
        assert_eq!(PackageManager::Rpm.installed(b"a\t1\tx\n"), b"a\t1\tx\n");
    }
}
