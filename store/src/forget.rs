//! Forgetting snapshots by a retention policy: which of the selected snapshots the keep rules
//! and limits keep ([`crate::retention`] decides per group; `max_size` is measured over the
//! whole repository by [`crate::footprint`]), and deleting the others' snapshot objects,
//! oldest first. Freeing their data is [`crate::prune`]'s work.

use crate::retention::{self, Decision, GroupBy, Policy};
use crate::snapshots::{self, Filter};
use crate::{footprint, Error, Repository};
use cairn_format::snapshot::Snapshot;
use cairn_format::Id;
use std::collections::HashMap;
use std::sync::Arc;
use thiserror::Error;

/// A snapshot and its id.
type Entry<'a> = (Id, &'a Snapshot);

/// Why a forget removed nothing.
#[derive(Debug, Error)]
pub enum ForgetError {
    /// The keep rules keep no snapshot of some groups (a usage error: the rules are wrong).
    #[error("the keep rules keep no snapshot of {} group(s): {}; nothing removed", .0.len(), .0.join("; "))]
    KeepsNothing(Vec<String>),
    /// `max_size` cannot measure a snapshot it must count.
    #[error("--max-size must measure every snapshot, and {path} cannot be read ({why}); nothing removed. Run `cairn check`, then `cairn repair snapshots`")]
    Unmeasurable {
        /// The snapshot object.
        path: String,
        /// Why it cannot be read.
        why: String,
    },
    /// Even the newest snapshot does not fit in `max_size`.
    #[error("--max-size {max} bytes: the newest snapshot alone does not fit (with what must stay, it needs more); nothing removed")]
    NothingFits {
        /// The limit.
        max: u64,
    },
    /// A snapshot named is not one the selection options select (a usage error).
    #[error("snapshot {id} is not selected by {selection}; nothing removed")]
    NotSelected {
        /// Its short id.
        id: String,
        /// What the selection options select.
        selection: String,
    },
    /// A snapshot named cannot be read, so the selection options cannot be checked against
    /// it (a usage error).
    #[error("snapshot {id} cannot be read ({why}), so whether {selection} selects it is unknown; nothing removed")]
    Unreadable {
        /// Its short id.
        id: String,
        /// Why.
        why: String,
        /// What the selection options select.
        selection: String,
    },
    /// The repository failed.
    #[error(transparent)]
    Store(#[from] Error),
}

/// What to forget.
#[derive(Debug, Clone)]
pub struct Request {
    /// Keep rules and per-group limits.
    pub policy: Policy,
    /// Which snapshots the policy applies to; the others are left alone.
    pub filter: Filter,
    /// Stored bytes the whole repository may hold after the prune.
    pub max_size: Option<u64>,
    /// Remove every snapshot of a group if the keep rules keep none (otherwise refused).
    pub allow_remove_all: bool,
    /// Decide only; delete nothing.
    pub dry_run: bool,
}

/// What a forget decided and did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One decision per selected snapshot.
    pub decisions: Vec<Decision>,
    /// The selected snapshots.
    pub snapshots: HashMap<Id, Snapshot>,
    /// Snapshot objects that could not be read (left alone).
    pub damaged: Vec<crate::snapshots::Unreadable>,
    /// Damaged snapshot objects named to be removed (their content cannot be read), and why.
    pub unreadable: Vec<(Id, String)>,
    /// Snapshot objects deleted.
    pub deleted: usize,
    /// Snapshot objects that could not be deleted, and why.
    pub errors: Vec<(Id, String)>,
}

impl Outcome {
    /// Selected snapshots kept.
    pub fn kept(&self) -> usize {
        self.decisions.iter().filter(|d| d.keep).count()
    }
}

/// Apply `req` to `repo`. Callers check first that the credentials may remove snapshots
/// ([`crate::policy::ensure_may_remove`]).
pub fn forget(repo: &Arc<Repository>, req: &Request) -> Result<Outcome, ForgetError> {
    let listing = snapshots::list(repo)?;
    let (selected, others): (Vec<Entry>, Vec<Entry>) = listing
        .snapshots
        .iter()
        .map(|(id, s)| (*id, s))
        .partition(|(_, s)| req.filter.matches(s));
    let mut decisions = retention::apply(&req.policy, &selected, chrono::Utc::now());
    let emptied = retention::emptied_groups(req.policy.group_by, &selected, &decisions);
    if !emptied.is_empty() && !req.allow_remove_all {
        let groups = emptied
            .iter()
            .map(|&i| describe_group(req.policy.group_by, selected[i].1))
            .collect();
        return Err(ForgetError::KeepsNothing(groups));
    }
    if let Some(max) = req.max_size {
        if let Some(u) = listing.unreadable.first() {
            return Err(ForgetError::Unmeasurable {
                path: u.path.clone(),
                why: u.why.clone(),
            });
        }
        limit_size(repo, &mut decisions, &selected, &others, max)?;
    }
    let mut out = Outcome {
        snapshots: selected.iter().map(|(id, s)| (*id, (*s).clone())).collect(),
        damaged: listing.unreadable,
        ..Outcome::default()
    };
    if !req.dry_run {
        (out.deleted, out.errors) = remove(repo, &decisions, &out.snapshots);
    }
    out.decisions = decisions;
    Ok(out)
}

/// Remove the snapshots `specs` name (ids, unique id prefixes, `latest`: the newest `filter`
/// selects), whatever the rules would keep: one whose data was lost, say. Each must be one
/// `filter` selects; a damaged snapshot object named by id is removed as well when `filter`
/// is empty (see [`Outcome::unreadable`]). Callers check the credentials first, as for
/// [`forget`]. Every name is resolved before anything is deleted.
pub fn forget_named(
    repo: &Arc<Repository>,
    specs: &[String],
    filter: &snapshots::Filter,
    dry_run: bool,
) -> Result<Outcome, ForgetError> {
    let mut out = Outcome::default();
    for spec in specs {
        let (id, loaded) = if spec == snapshots::LATEST {
            let (id, snap) = snapshots::resolve(repo, spec, filter)?;
            (id, Ok(snap))
        } else {
            let id = snapshots::resolve_name(repo, spec)?;
            (id, snapshots::load(repo, &id))
        };
        let snap = match loaded {
            Ok(snap) => snap,
            // A damaged object named by its id goes too (it holds that snapshot's record and
            // nothing else), but only with no selection options, which it cannot be held to.
            Err(e) if e.is_damage() => {
                if !filter.is_empty() {
                    return Err(ForgetError::Unreadable {
                        id: id.short(),
                        why: e.to_string(),
                        selection: filter.describe(),
                    });
                }
                if !out.unreadable.iter().any(|(u, _)| *u == id) {
                    out.unreadable.push((id, e.to_string()));
                    out.decisions.push(Decision {
                        id,
                        keep: false,
                        reasons: vec!["damaged".to_string()],
                    });
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if !filter.matches(&snap) {
            return Err(ForgetError::NotSelected {
                id: id.short(),
                selection: filter.describe(),
            });
        }
        if out.snapshots.insert(id, snap).is_none() {
            out.decisions.push(Decision {
                id,
                keep: false,
                reasons: vec!["named".to_string()],
            });
        }
    }
    if !dry_run {
        (out.deleted, out.errors) = remove(repo, &out.decisions, &out.snapshots);
    }
    Ok(out)
}

/// `max_size`: of the kept snapshots, newest first, keep the longest run that fits.
fn limit_size(
    repo: &Arc<Repository>,
    decisions: &mut [Decision],
    selected: &[(Id, &Snapshot)],
    others: &[(Id, &Snapshot)],
    max: u64,
) -> Result<(), ForgetError> {
    let mut kept: Vec<(usize, Id, &Snapshot)> = decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.keep)
        .map(|(i, d)| (i, d.id, selected[i].1))
        .collect();
    kept.sort_by_key(|k| std::cmp::Reverse((k.2.time_ns, k.1)));
    let candidates: Vec<(Id, &Snapshot)> = kept.iter().map(|(_, id, s)| (*id, *s)).collect();
    let fp = footprint::measure(repo, others, &candidates)?;
    let fit = retention::fitting_prefix(fp.fixed, &fp.candidates, &fp.packs, max);
    if fit == 0 && !kept.is_empty() {
        return Err(ForgetError::NothingFits { max });
    }
    for (i, _, _) in &kept[fit..] {
        decisions[*i].keep = false;
        decisions[*i].reasons = vec!["max-size".to_string()];
    }
    Ok(())
}

/// Delete the removed snapshots' objects, oldest first; how many, and the failures (collected,
/// not fatal).
fn remove(
    repo: &Repository,
    decisions: &[Decision],
    by_id: &HashMap<Id, Snapshot>,
) -> (usize, Vec<(Id, String)>) {
    let mut gone: Vec<&Decision> = decisions.iter().filter(|d| !d.keep).collect();
    gone.sort_by_key(|d| (by_id.get(&d.id).map_or(0, |s| s.time_ns), d.id));
    let (mut deleted, mut errors) = (0, Vec::new());
    for d in gone {
        match repo.backend().delete(&format!("snapshots/{}", d.id)) {
            Ok(()) => deleted += 1,
            Err(e) => errors.push((d.id, e.to_string())),
        }
    }
    (deleted, errors)
}

/// The group `s` is in under `by`, as output names it ("host h, source paths, paths /etc").
pub fn describe_group(by: GroupBy, s: &Snapshot) -> String {
    let (_, _, paths) = retention::group_key(by, s);
    let parts: Vec<String> = [
        by.host.then(|| format!("host {}", s.host)),
        by.source.then(|| format!("source {}", s.source.name())),
        (!paths.is_empty()).then(|| format!("paths {}", paths.join(" "))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "all selected snapshots".to_string()
    } else {
        parts.join(", ")
    }
}
