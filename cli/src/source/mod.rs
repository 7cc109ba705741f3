//! Sources: what a backup reads. `fs` walks host paths (with `meta` for their metadata),
//! `etcd` streams a member's snapshot (checked by `trailer` and `bbolt_facts`), `static_pods`
//! picks the latest static pod revisions. Project exports will sit beside them.

pub mod bbolt_facts;
pub mod etcd;
pub mod fs;
pub mod meta;
pub mod static_pods;
pub mod trailer;
