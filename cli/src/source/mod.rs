//! Sources: what a backup reads. `fs` walks host paths; etcd, static pod resources and
//! project exports will sit beside it.

pub mod bbolt_facts;
pub mod etcd;
pub mod fs;
pub mod meta;
pub mod static_pods;
pub mod trailer;
