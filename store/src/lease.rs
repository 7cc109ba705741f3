//! Leases: how running backups, copies and prunes make themselves known (SPEC.md §11).
//!
//! A writer puts `locks/<random>` before it lists the gc markers and loads the index, then
//! records the markers it saw; it never reuses blobs of packs those markers condemn. A thread
//! renews the lease every [`renew_interval`]; prune ignores leases not renewed for
//! [`expiry_secs`], and a writer that could not renew its own lease for half that long refuses
//! to commit its snapshot (a prune may already have swept packs it relied on). Prune itself
//! holds the single `locks/prune` lease, taken with a conditional create.
//!
//! Writer leases are create-only, so backups need no permission to overwrite or delete: each
//! renewal is a new object `locks/<random>.<n>` (n = 1, 2, …), and release writes
//! `locks/<random>.end`. Readers take the highest-numbered record of each lease; prune (with
//! credentials that may delete) removes released, abandoned and superseded lease objects.

use crate::index::Index;
use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::gc::{GcRecord, LeaseKind, LeaseRecord};
use cairn_format::Id;
use std::collections::HashSet;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest lease or gc marker object accepted.
const MAX_RECORD_LEN: u64 = 256 << 20;
/// Default lease expiry.
const DEFAULT_EXPIRY_SECS: i64 = 3600;
/// Path of the prune lease.
pub const PRUNE_LEASE: &str = "locks/prune";

/// Seconds after its last renewal a lease is considered abandoned (`CAIRN_LEASE_EXPIRY`
/// overrides, e.g. for tests).
pub fn expiry_secs() -> i64 {
    std::env::var("CAIRN_LEASE_EXPIRY")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(DEFAULT_EXPIRY_SECS)
}

/// How often a lease is renewed: a twelfth of the expiry, at least every second.
pub fn renew_interval() -> Duration {
    Duration::from_secs((expiry_secs() / 12).max(1) as u64)
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// True if the lease was taken on this host by a process that no longer exists (killed, or
/// the host rebooted): it will never be renewed, so nobody needs to wait for it to expire.
/// A reused pid keeps the lease alive, which is the safe mistake.
pub fn holder_is_gone(lease: &LeaseRecord) -> bool {
    if lease.host != this_host() || lease.pid == std::process::id() {
        return false;
    }
    match rustix::process::Pid::from_raw(lease.pid as i32) {
        Some(pid) => matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

/// Clock difference between hosts tolerated before a lease's time is called "in the future".
const CLOCK_SKEW_SECS: i64 = 300;

/// True if `lease` was renewed (by its own clock) well after now: it will not expire while
/// that clock is ahead, so whoever waits for it waits forever.
pub fn from_the_future(lease: &LeaseRecord) -> bool {
    lease.renewed_unix.saturating_sub(now_unix()) > CLOCK_SKEW_SECS
}

/// True if `lease` may still be renewed by its holder.
pub fn is_held(lease: &LeaseRecord) -> bool {
    lease.is_live(now_unix(), expiry_secs()) && !holder_is_gone(lease)
}

struct State {
    record: LeaseRecord,
    /// Number of the last record object written (`locks/<random>.<n>`; 0 is the first).
    written: u64,
    renewed: Instant,
    /// Set once a renewal came too late (the process was paused or the storage unreachable
    /// for half the expiry): a prune may have treated the lease as abandoned, so it is never
    /// renewed again and the holder must not commit.
    lost: bool,
}

impl State {
    fn overdue(&self) -> bool {
        self.renewed.elapsed() >= Duration::from_secs((expiry_secs() / 2).max(1) as u64)
    }
}

/// A held lease; released on drop (a writer's by its `.end` object, the prune lease by
/// deleting it).
pub struct Lease {
    repo: Arc<Repository>,
    /// `locks/<random>` for a writer, [`PRUNE_LEASE`] for prune.
    path: String,
    state: Arc<Mutex<State>>,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
    condemned: HashSet<Id>,
}

impl Lease {
    /// Start renewing a lease whose record was written at `written` (taken before the write).
    fn start(repo: &Arc<Repository>, path: String, record: LeaseRecord, written: Instant) -> Lease {
        let state = Arc::new(Mutex::new(State {
            record,
            written: 0,
            renewed: written,
            lost: false,
        }));
        let (stop, stopped) = mpsc::channel::<()>();
        let renewer = {
            let (repo, path, state) = (repo.clone(), path.clone(), state.clone());
            std::thread::spawn(move || loop {
                match stopped.recv_timeout(renew_interval()) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let mut st = state.lock().expect("lease state");
                if st.lost || st.overdue() {
                    st.lost = true;
                    tracing::warn!(
                        "lease {path} was not renewed in time; this run will not commit"
                    );
                    return;
                }
                // The renewal counts from before the write: a pause in the middle of it
                // (SIGSTOP, a stalled request) must not look like a fresh renewal.
                let attempt = Instant::now();
                match write_record(&repo, &path, &mut st) {
                    Ok(()) => st.renewed = attempt,
                    Err(e) => tracing::warn!("could not renew lease {path}: {e}"),
                }
            })
        };
        Lease {
            repo: repo.clone(),
            path,
            state,
            stop: Some(stop),
            renewer: Some(renewer),
            condemned: HashSet::new(),
        }
    }

    fn record(kind: LeaseKind) -> LeaseRecord {
        let now = now_unix();
        LeaseRecord {
            kind,
            host: this_host(),
            pid: std::process::id(),
            started_unix: now,
            renewed_unix: now,
            seen_markers: None,
        }
    }

    /// Start writing: take a writer lease, then load the index without the packs any gc
    /// marker condemns ([`Index::load_for_writing`]: data blobs of a large repository are
    /// known present, not located), and record which markers were seen.
    pub fn begin_write(repo: &Arc<Repository>) -> Result<(Lease, Index)> {
        let path = format!("locks/{}", hex::encode(rand::random::<[u8; 16]>()));
        let written = Instant::now();
        let record = Self::record(LeaseKind::Writer);
        if !repo.put_meta_new(&path, &record.encode())? {
            return Err(Error::Invalid(format!(
                "{path} already exists: two writers drew the same random lease name; run again"
            )));
        }
        let mut lease = Self::start(repo, path, record, written);
        let markers = load_markers(repo)?;
        let condemned: HashSet<Id> = markers
            .iter()
            .flat_map(|(_, m)| m.packs.iter().map(|p| p.id))
            .collect();
        let index = Index::load_for_writing(repo, &condemned)?;
        lease.set_seen(markers.iter().map(|(id, _)| *id).collect())?;
        lease.condemned = condemned;
        Ok((lease, index))
    }

    /// Take the single prune lease. A live one held by someone else is an error; an expired
    /// one is taken over.
    pub fn prune(repo: &Arc<Repository>) -> Result<Lease> {
        for _ in 0..2 {
            let written = Instant::now();
            let record = Self::record(LeaseKind::Prune);
            if repo.put_meta_new(PRUNE_LEASE, &record.encode())? {
                return Ok(Self::start(repo, PRUNE_LEASE.to_string(), record, written));
            }
            match repo
                .get_meta_at(PRUNE_LEASE, MAX_RECORD_LEN)
                .and_then(|b| LeaseRecord::decode(&b).map_err(|e| Error::damaged(PRUNE_LEASE, e)))
            {
                Ok(held) if is_held(&held) && from_the_future(&held) => {
                    return Err(Error::Invalid(format!(
                        "{PRUNE_LEASE} (host {}, pid {}) is dated {}s in the future, so it never \
                         expires: planted, or that host's clock is wrong. If no prune runs on \
                         host {}, delete {PRUNE_LEASE}",
                        held.host,
                        held.pid,
                        held.renewed_unix - now_unix(),
                        held.host
                    )))
                }
                Ok(held) if is_held(&held) => {
                    return Err(Error::Invalid(format!(
                        "another prune holds {PRUNE_LEASE} (host {}, pid {}, renewed {}s ago); wait for it, or if it died, for the lease to expire after {}s",
                        held.host,
                        held.pid,
                        now_unix() - held.renewed_unix,
                        expiry_secs()
                    )))
                }
                Ok(held) => tracing::warn!(
                    "taking over the prune lease of host {} pid {} (expired, or its process is gone)",
                    held.host,
                    held.pid
                ),
                Err(Error::NotFound { .. }) => {}
                Err(e @ Error::Damaged { .. }) => {
                    tracing::warn!("replacing unreadable prune lease: {e}")
                }
                // The storage failed: whether a prune holds the lease is unknown.
                Err(e) => return Err(e),
            }
            repo.backend().delete(PRUNE_LEASE)?;
        }
        Err(Error::Invalid(format!(
            "could not take {PRUNE_LEASE}: another prune started at the same moment"
        )))
    }

    /// Record the gc markers seen when the index was loaded.
    fn set_seen(&self, markers: Vec<Id>) -> Result<()> {
        let mut st = self.state.lock().expect("lease state");
        st.record.seen_markers = Some(markers);
        let attempt = Instant::now();
        write_record(&self.repo, &self.path, &mut st)?;
        st.renewed = attempt;
        Ok(())
    }

    /// Packs condemned by the markers seen: they must not be referenced or stored again under
    /// their names.
    pub fn condemned(&self) -> &HashSet<Id> {
        &self.condemned
    }

    /// Before committing a snapshot: fail if the lease may have expired in the eyes of a prune.
    pub fn ensure_fresh(&self) -> Result<()> {
        let mut st = self.state.lock().expect("lease state");
        let since = st.renewed.elapsed();
        let limit = Duration::from_secs((expiry_secs() / 2).max(1) as u64);
        if st.lost || st.overdue() {
            st.lost = true;
            return Err(Error::Invalid(format!(
                "lease {} was last renewed {}s ago (limit {}s): a prune may have removed data this run relies on, so no snapshot was written; run it again",
                self.path,
                since.as_secs(),
                limit.as_secs()
            )));
        }
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        let released = if self.path == PRUNE_LEASE {
            self.repo.backend().delete(&self.path)
        } else {
            let st = self.state.lock().expect("lease state");
            self.repo
                .put_meta_new(&format!("{}.{END}", self.path), &st.record.encode())
                .map(|_| ())
        };
        if let Err(e) = released {
            tracing::warn!(
                "could not release lease {}: {e}; it expires on its own",
                self.path
            );
        }
    }
}

/// Suffix of the object that releases a writer lease.
const END: &str = "end";

/// Renew: store the record with a fresh time, the prune lease in place (prune may delete and
/// overwrite), a writer lease as its next numbered object (create-only).
fn write_record(repo: &Repository, path: &str, st: &mut State) -> Result<()> {
    st.record.renewed_unix = now_unix();
    if path == PRUNE_LEASE {
        return repo.put_meta_at(path, &st.record.encode());
    }
    let n = st.written + 1;
    let at = format!("{path}.{n}");
    if !repo.put_meta_new(&at, &st.record.encode())? {
        return Err(Error::Invalid(format!(
            "{at} already exists: another process renews the same lease"
        )));
    }
    st.written = n;
    Ok(())
}

/// One lease as stored: its objects and its newest record.
#[derive(Debug)]
pub struct StoredLease {
    /// `locks/<name>` (without a renewal number).
    pub path: String,
    /// Its newest record; an error if that cannot be read (the caller treats it as held).
    pub record: Result<LeaseRecord>,
    /// Released by its holder (`.end` stored).
    pub released: bool,
    /// Every object of the lease, the `.end` object last.
    pub objects: Vec<String>,
}

impl StoredLease {
    /// Whether its holder may still be working: not released, and held (an unreadable record
    /// counts as held).
    pub fn may_be_held(&self) -> bool {
        !self.released && self.record.as_ref().map_or(true, is_held)
    }

    /// Objects older than the newest record (only the newest one counts).
    pub fn superseded(&self) -> &[String] {
        &self.objects[..self.objects.len().saturating_sub(1)]
    }
}

/// Split `locks/<name>` into the lease it belongs to and its renewal: `Some(n)` for the n-th
/// record (0 for the first), `None` for the `.end` object.
fn lease_of(path: &str) -> (&str, Option<u64>) {
    if let Some((base, suffix)) = path.rsplit_once('.') {
        if !base.ends_with('/') && !base.ends_with("locks") {
            if suffix == END {
                return (base, None);
            }
            if let Ok(n) = suffix.parse::<u64>() {
                return (base, Some(n));
            }
        }
    }
    (path, Some(0))
}

/// Every lease stored, with its newest record. Unreadable ones are returned as errors so the
/// caller can treat them as held. Leases of older writers (one object, rewritten in place)
/// read as leases with no renewal objects.
pub fn list_leases(repo: &Repository) -> Result<Vec<StoredLease>> {
    let mut groups: std::collections::BTreeMap<String, Vec<(Option<u64>, String)>> =
        Default::default();
    for obj in repo.backend().list("locks")? {
        let (base, n) = lease_of(&obj.path);
        groups
            .entry(base.to_string())
            .or_default()
            .push((n, obj.path.clone()));
    }
    let mut out = Vec::new();
    for (path, mut objects) in groups {
        // Numbered records in order, the `.end` object (None) last.
        objects.sort_by_key(|(n, _)| n.map_or(u64::MAX, |n| n));
        let released = objects.last().is_some_and(|(n, _)| n.is_none());
        let newest = objects
            .iter()
            .rev()
            .find(|(n, _)| n.is_some())
            .map(|(_, p)| p.clone());
        let record = match (&newest, released) {
            (Some(p), false) => repo
                .get_meta_at(p, MAX_RECORD_LEN)
                .and_then(|b| LeaseRecord::decode(&b).map_err(|e| Error::damaged(p.clone(), e))),
            // Released: its `.end` object holds the last record.
            _ => {
                let end = &objects.last().expect("a listed lease has objects").1;
                repo.get_meta_at(end, MAX_RECORD_LEN).and_then(|b| {
                    LeaseRecord::decode(&b).map_err(|e| Error::damaged(end.clone(), e))
                })
            }
        };
        if matches!(record, Err(Error::NotFound { .. })) && !released {
            continue; // removed meanwhile
        }
        out.push(StoredLease {
            path,
            record,
            released,
            objects: objects.into_iter().map(|(_, p)| p).collect(),
        });
    }
    Ok(out)
}

/// Every gc marker, by id. A marker that cannot be read is an error: its packs' fate is
/// unknown, so writers and prune must not guess.
pub fn load_markers(repo: &Repository) -> Result<Vec<(Id, GcRecord)>> {
    let (markers, unreadable) = read_markers(repo)?;
    match unreadable.into_iter().next() {
        Some((path, cause)) => Err(Error::Invalid(format!(
            "gc marker {path} cannot be read ({cause}), so which packs a prune condemned is \
             unknown, and backups and prunes stop rather than guess; {UNREADABLE_MARKER}"
        ))),
        None => Ok(markers),
    }
}

/// What to do about an object below `gc/` that is no readable marker.
pub const UNREADABLE_MARKER: &str = "if no prune is running: move the object out of the \
    repository (planted, or damaged), run `cairn repair index` (packs it condemned are indexed \
    again) and `cairn check`, then prune again";

/// Objects that are no readable marker: path, and why.
pub type Unreadable = Vec<(String, String)>;

/// The gc markers that can be read, and the objects below `gc/` that cannot, with why (for
/// `check`, which reports them and goes on).
pub fn read_markers(repo: &Repository) -> Result<(Vec<(Id, GcRecord)>, Unreadable)> {
    let (mut out, mut unreadable) = (Vec::new(), Vec::new());
    for obj in repo.backend().list("gc")? {
        let name = obj.path.rsplit('/').next().unwrap_or_default();
        let Ok(id) = name.parse::<Id>() else {
            unreadable.push((obj.path, "its name is not a marker id".to_string()));
            continue;
        };
        match repo.get_meta("gc", &id, MAX_RECORD_LEN) {
            Ok(plain) => match GcRecord::decode(&plain) {
                Ok(rec) => out.push((id, rec)),
                Err(e) => unreadable.push((obj.path, e.to_string())),
            },
            Err(Error::NotFound { .. }) => continue, // swept meanwhile
            Err(Error::Damaged { cause, .. }) => unreadable.push((obj.path, cause.to_string())),
            Err(e @ Error::NameMismatch { .. }) => unreadable.push((obj.path, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Ok((out, unreadable))
}
