//! Unattended operation: the configuration file, schedules, one run of a job, job state and
//! Prometheus metrics. `cairn run`, `cairn jobs`, `cairn daemon` and `cairn generate
//! systemd|cronjob` are thin shells over this module.

pub mod config;
pub mod metrics;
pub mod runner;
pub mod schedule;
pub mod state;
