//! `cairn generate cronjob JOB`: a Kubernetes CronJob running `cairn run JOB` on an OpenShift
//! control-plane node, built from the Kubernetes API types.
//!
//! Every file the job's configuration names is mounted at the path it names: the
//! configuration itself from a ConfigMap, secrets (write key, identity, passphrase, S3
//! credentials) from one Secret, host files (etcd certificates, static pod resources, paths to
//! back up, local repositories) as hostPath volumes. The cache and the job state live in
//! hostPath directories of the node, so they persist between runs.

use super::ConfigFile;
use crate::args::Global;
use crate::exit::Code;
use anyhow::{Context, Result};
use cairn_store::job::config::{Job, Loaded, Source};
use clap::Args;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, HostPathVolumeSource,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, SecretVolumeSource, SecurityContext, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `cairn generate cronjob`.
#[derive(Args, Debug)]
#[command(after_help = "\
The output starts with the kubectl commands that create the ConfigMap (the configuration file)
and the Secret (every secret file the job's repositories name) it mounts.

Example:
  cairn generate cronjob etcd --image registry.example.com/cairn:0.1 > cairn-etcd.yaml")]
pub struct CronJobArgs {
    /// The job (a [jobs.NAME] table with a schedule).
    pub job: String,
    #[command(flatten)]
    pub file: ConfigFile,
    /// Container image holding the cairn binary.
    #[arg(long, default_value = "cairn:latest")]
    pub image: String,
    /// Namespace of the CronJob, ConfigMap and Secret.
    #[arg(long, default_value = "cairn")]
    pub namespace: String,
    /// Service account (needs the privileged SCC for host paths and host network).
    #[arg(long, default_value = "cairn")]
    pub service_account: String,
}

/// The name of the Secret holding the job's secret files.
pub fn secret_name(job: &str) -> String {
    format!("cairn-{job}-secrets")
}

/// The name of the ConfigMap holding the configuration file.
pub fn config_map_name(job: &str) -> String {
    format!("cairn-{job}-config")
}

/// Files that must come from the Secret: (path in the pod, key in the Secret).
fn secret_files(loaded: &Loaded, job: &Job) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    let repos =
        std::iter::once(job.repository.get_ref()).chain(job.copy_to.iter().map(|c| c.get_ref()));
    for name in repos {
        let Some(r) = loaded.repository(name) else {
            continue;
        };
        for p in [
            &r.key,
            &r.identity,
            &r.passphrase_file,
            &r.s3.credentials_file,
            &r.s3.ca_bundle,
        ]
        .into_iter()
        .flatten()
        {
            if out.iter().any(|(q, _)| q == p) {
                continue;
            }
            let base: String = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into())
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let key = if out.iter().any(|(_, k)| *k == base) {
                format!("{}-{base}", out.len())
            } else {
                base
            };
            out.push((p.clone(), key));
        }
    }
    out
}

/// Host directories to mount: (path, writable). Parents already mounted are not repeated.
fn host_paths(loaded: &Loaded, job: &Job) -> Vec<(PathBuf, bool)> {
    let mut want: Vec<(PathBuf, bool)> = vec![
        (PathBuf::from("/var/cache/cairn"), true),
        (loaded.state_dir(), true),
    ];
    let parent = |p: &Path| {
        p.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"))
    };
    let etcd_files = |e: &cairn_store::job::config::Etcd| {
        [&e.cacert, &e.cert, &e.key]
            .into_iter()
            .flatten()
            .map(|p| (parent(p), false))
            .collect::<Vec<_>>()
    };
    let static_dir = |d: &Option<PathBuf>| {
        (
            d.clone()
                .unwrap_or_else(|| PathBuf::from(cairn_store::source::static_pods::DEFAULT_DIR)),
            false,
        )
    };
    match &job.source {
        Source::Paths { paths, .. } => want.extend(paths.iter().map(|p| (p.clone(), false))),
        Source::Etcd(e) => want.extend(etcd_files(e)),
        Source::StaticPods { dir } => want.push(static_dir(dir)),
        Source::Cluster {
            etcd,
            static_pods_dir,
        } => {
            want.extend(etcd_files(etcd));
            want.push(static_dir(static_pods_dir));
        }
        Source::Project { .. } => {}
        // Refused by `cronjob` before this is reached: a host job belongs on the host.
        Source::Host { .. } => {}
    }
    want.extend(
        loaded
            .repositories_of(job)
            .filter_map(Loaded::local_dir)
            .map(|d| (d, true)),
    );
    // Writable first, so a read-only child of a writable directory is dropped, not the reverse.
    want.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out: Vec<(PathBuf, bool)> = Vec::new();
    for (p, rw) in want {
        if let Some(existing) = out.iter_mut().find(|(q, _)| p.starts_with(q)) {
            existing.1 |= rw;
            continue;
        }
        out.push((p, rw));
    }
    out
}

/// The CronJob and the kubectl commands that create what it mounts.
pub fn cronjob(loaded: &Loaded, name: &str, a: &CronJobArgs) -> Result<(CronJob, Vec<String>)> {
    let job = loaded.job(name).map_err(anyhow::Error::msg)?;
    let sched = job.schedule.as_ref().with_context(|| {
        format!("job {name} has no schedule; add `schedule = \"0 3 * * *\"` to [jobs.{name}]")
    })?;
    let mut fields: Vec<String> = sched
        .get_ref()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if fields.len() != 5 {
        return Err(crate::exit::usage(
            format!(
                "job {name}: schedule {:?} has a seconds field; Kubernetes CronJobs take 5 fields",
                sched.get_ref()
            ),
            "give the job a 5-field schedule",
        ));
    }
    // Kubernetes takes days of the week 0-6 only: Sunday as 7 is written as 0.
    fields[4] = super::systemd::kube_weekdays(&fields[4]).map_err(|e| {
        crate::exit::usage(
            format!("job {name}: schedule {:?}: {e}", sched.get_ref()),
            "change the job's days of the week, or run the job with `cairn daemon`, which takes every cron expression",
        )
    })?;
    let schedule = fields.join(" ");
    if matches!(job.source, Source::Host { .. }) {
        return Err(crate::exit::usage(
            format!(
            "job {name} backs up the host itself (source kind \"host\"): in a pod, the package \
             inventory, kernel and hostname would be the container's, not the node's"
            ),
            format!(
                "run it on the node from a systemd timer instead: cairn generate systemd {name}"
            ),
        ));
    }
    let config_path = std::path::absolute(&loaded.path).unwrap_or_else(|_| loaded.path.clone());
    let mut args = vec![
        "run".to_string(),
        name.into(),
        "--config".into(),
        config_path.display().to_string(),
    ];
    // The job's own `host`, else the node the run lands on.
    if job.host.is_none() {
        args.extend(["--host".into(), "$(NODE_NAME)".into()]);
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    volumes.push(Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(name),
            ..Default::default()
        }),
        ..Default::default()
    });
    mounts.push(VolumeMount {
        name: "config".into(),
        mount_path: config_path.display().to_string(),
        sub_path: Some("cairn.toml".into()),
        read_only: Some(true),
        ..Default::default()
    });
    let secrets = secret_files(loaded, job);
    let ns = &a.namespace;
    let sa = &a.service_account;
    let mut commands = vec![
        format!("kubectl create namespace {ns}"),
        format!("kubectl -n {ns} create serviceaccount {sa}"),
        // The pod is privileged, on the host's network, with hostPath mounts.
        format!(
            "oc adm policy add-scc-to-user privileged -z {sa} -n {ns}   # OpenShift; on Kubernetes: kubectl label namespace {ns} pod-security.kubernetes.io/enforce=privileged"
        ),
        format!(
            "kubectl -n {ns} create configmap {} --from-file=cairn.toml={}",
            config_map_name(name),
            config_path.display()
        ),
    ];
    if !secrets.is_empty() {
        volumes.push(Volume {
            name: "secrets".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name(name)),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut cmd = format!(
            "kubectl -n {} create secret generic {}",
            a.namespace,
            secret_name(name)
        );
        for (path, key) in &secrets {
            mounts.push(VolumeMount {
                name: "secrets".into(),
                mount_path: path.display().to_string(),
                sub_path: Some(key.clone()),
                read_only: Some(true),
                ..Default::default()
            });
            cmd.push_str(&format!(" --from-file={key}={}", path.display()));
        }
        commands.push(cmd);
    }
    for (i, (path, rw)) in host_paths(loaded, job).into_iter().enumerate() {
        let vname = format!("host-{i}");
        volumes.push(Volume {
            name: vname.clone(),
            host_path: Some(HostPathVolumeSource {
                path: path.display().to_string(),
                type_: Some(if rw {
                    "DirectoryOrCreate".into()
                } else {
                    String::new()
                })
                .filter(|s| !s.is_empty()),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: vname,
            mount_path: path.display().to_string(),
            read_only: Some(!rw),
            ..Default::default()
        });
    }
    let env = vec![
        EnvVar {
            name: "NODE_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "CAIRN_CACHE_DIR".into(),
            value: Some("/var/cache/cairn".into()),
            ..Default::default()
        },
    ];
    let container = Container {
        name: "cairn".into(),
        image: Some(a.image.clone()),
        command: Some(vec!["cairn".into()]),
        args: Some(args),
        env: Some(env),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let master = "node-role.kubernetes.io/master";
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        service_account_name: Some(a.service_account.clone()),
        host_network: Some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        node_selector: Some(BTreeMap::from([(master.to_string(), String::new())])),
        tolerations: Some(
            [master, "node-role.kubernetes.io/control-plane"]
                .iter()
                .map(|k| Toleration {
                    key: Some((*k).into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoSchedule".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        priority_class_name: Some("system-node-critical".into()),
        volumes: Some(volumes),
        ..Default::default()
    };
    let cj = CronJob {
        metadata: ObjectMeta {
            name: Some(format!("cairn-{name}")),
            namespace: Some(a.namespace.clone()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_string(), "cairn".to_string()),
                ("app.kubernetes.io/instance".to_string(), name.to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(CronJobSpec {
            schedule,
            time_zone: Some(
                job.timezone
                    .as_ref()
                    .map_or("UTC".into(), |t| t.get_ref().clone()),
            ),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                spec: Some(JobSpec {
                    backoff_limit: Some(0),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(BTreeMap::from([
                                ("app.kubernetes.io/name".to_string(), "cairn".to_string()),
                                ("app.kubernetes.io/instance".to_string(), name.to_string()),
                            ])),
                            ..Default::default()
                        }),
                        spec: Some(pod),
                    },
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok((cj, commands))
}

pub fn run(_g: &Global, a: CronJobArgs) -> Result<Code> {
    let loaded = a.file.load()?;
    let (cj, commands) = cronjob(&loaded, &a.job, &a)?;
    let yaml = serde_saphyr::to_string(&cj).context("writing the CronJob as YAML")?;
    let mut out = format!(
        "# Generated by `cairn generate cronjob {}`. Create what it mounts first:\n",
        a.job
    );
    for c in commands {
        out.push_str(&format!("#   {c}\n"));
    }
    out.push_str(
        "# Exit codes: 0 ok; 3 partial, 4 damage found, 1 failed: each fails the Job (the\n\
         # metrics file or `cairn jobs` says which).\n",
    );
    let job = loaded.job(&a.job).map_err(anyhow::Error::msg)?;
    if job.host.is_none() && job.retention.is_some() {
        let note = format!(
            "job {} sets no `host`: its snapshots are recorded under the node each run lands \
             on, and retention (max_count, keep rules) counts each node's apart; set \
             `host = \"<cluster name>\"` in [jobs.{}] to count them together",
            a.job, a.job
        );
        out.push_str(&format!("# Note: {note}.\n"));
        crate::output::warn(format_args!("{note}"));
    }
    out.push_str(&yaml);
    crate::outln!("{}", out.trim_end())?;
    Ok(Code::Ok)
}
