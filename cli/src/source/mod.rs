//! Sources: what a backup reads. `fs` walks host paths; etcd, static pod resources and
//! project exports will sit beside it.

pub mod fs;
pub mod meta;
