//! Command-line arguments.

use cairn_format::snapshot::SourceKind;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Backups for Kubernetes and OpenShift control planes: deduplicated, compressed (zstd) and
/// encrypted with age, on local disk, NFS or S3.
///
/// Two key roles: the identity (an age X25519 identity, or a passphrase) can do everything;
/// a write key (exported with `cairn key write-key`) can back up and list, but never read
/// file contents. Put write keys on control-plane hosts, keep identities offline.
#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    after_help = crate::examples::TOP,
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Repository: a directory path, file:// URL, or s3://BUCKET/PREFIX (gs:// and az://
    /// work through the same client but are untested).
    #[arg(short = 'r', long, env = "CAIRN_REPO", global = true)]
    pub repo: Option<String>,
    /// age identity file (as written by `cairn key generate` or `age-keygen`): full access.
    #[arg(short = 'i', long, env = "CAIRN_IDENTITY", global = true)]
    pub identity: Option<PathBuf>,
    /// Write key file (from `cairn key write-key`): back up and list, no file contents.
    #[arg(short = 'k', long, env = "CAIRN_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// File whose first line is the repository passphrase.
    #[arg(long, env = "CAIRN_PASSPHRASE_FILE", global = true)]
    pub passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Where metadata of remote repositories (keys, index, snapshots, trees) is cached, one
    /// directory per repository; entries are verified against their names on every read.
    /// Default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn.
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Read everything from the repository, without the local metadata cache
    /// (`CAIRN_NO_CACHE=1`, `true` or `yes`; `0`, `false`, `no` or empty leave it on).
    #[arg(long, env = "CAIRN_NO_CACHE", global = true,
          action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug). CAIRN_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr, no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Read the repository as it was at TIME (RFC 3339, e.g. 2026-12-05T17:00:00Z) from the
    /// object versions of a versioned S3 bucket, for snapshots, ls, restore, check and copy's
    /// source: what an attacker deleted or overwrote since is back. Read-only.
    #[arg(long, global = true, value_name = "TIME")]
    pub as_of: Option<String>,
}

/// How to reach S3. Everything follows the AWS conventions (see the README): credentials from
/// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the AWS_PROFILE profile
/// (default `default`) in the shared credentials file, then the config file, else web
/// identity (EKS/OpenShift pod identity) and instance metadata.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Object store options")]
pub struct S3Args {
    /// S3 endpoint of an S3-compatible server (MinIO, Ceph RGW, ODF/NooBaa), with its scheme:
    /// http://HOST:PORT or https://HOST; uses path-style addressing, and plain http is allowed
    /// for an endpoint given (unless AWS_ALLOW_HTTP=false). Overrides AWS_ENDPOINT_URL_S3,
    /// AWS_ENDPOINT_URL and the profile's endpoint_url. Default: AWS.
    #[arg(long, env = "CAIRN_S3_ENDPOINT", global = true, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region. Overrides AWS_REGION, AWS_DEFAULT_REGION and the profile's region; the
    /// default is us-east-1.
    #[arg(long, env = "CAIRN_S3_REGION", global = true)]
    pub s3_region: Option<String>,
    /// Seconds an object store request may go without moving a byte (sent or received) before
    /// it is given up and retried; a slow but steady transfer never times out.
    #[arg(
        long,
        env = "CAIRN_S3_TIMEOUT",
        global = true,
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub s3_timeout: u64,
    /// Retries of a failed request (with exponential backoff and jitter) before giving up
    /// [default: AWS_MAX_ATTEMPTS or the AWS profile's max_attempts, less one; else 10]
    #[arg(long, env = "CAIRN_S3_RETRIES", global = true, value_name = "N")]
    pub s3_retries: Option<usize>,
    /// A configured repository's AWS profile (`s3.profile` in cairn.toml; no flag).
    #[arg(skip)]
    pub aws_profile: Option<String>,
    /// A configured repository's shared credentials file (`s3.credentials_file`; no flag).
    #[arg(skip)]
    pub aws_credentials_file: Option<PathBuf>,
    /// A configured repository's CA bundle (`s3.ca_bundle`; no flag: `AWS_CA_BUNDLE`).
    #[arg(skip)]
    pub aws_ca_bundle: Option<PathBuf>,
}

impl S3Args {
    /// The store's options.
    pub fn options(&self) -> cairn_store::backend::RemoteOptions {
        cairn_store::backend::RemoteOptions {
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            timeout: std::time::Duration::from_secs(self.s3_timeout.max(1)),
            retries: self.s3_retries,
            aws_profile: self.aws_profile.clone(),
            aws_credentials_file: self.aws_credentials_file.clone(),
            aws_ca_bundle: self.aws_ca_bundle.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    #[command(after_help = crate::examples::INIT)]
    Init(InitArgs),
    /// Manage keys: generate identities, export write keys, add, list and remove key objects.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Back up files, etcd, static pod resources, a cluster, projects, a host or a command's output.
    #[command(after_help = crate::examples::BACKUP)]
    Backup(Box<BackupArgs>),
    /// List snapshots.
    #[command(after_help = crate::examples::SNAPSHOTS)]
    Snapshots(SnapshotsArgs),
    /// List the files in a snapshot.
    #[command(after_help = crate::examples::LS)]
    Ls(LsArgs),
    /// Write one file of a snapshot to stdout.
    #[command(after_help = crate::examples::CAT)]
    Cat(CatArgs),
    /// Restore a snapshot into a directory, verifying every byte.
    Restore(RestoreArgs),
    /// Show what changed between two snapshots (content and metadata).
    Diff(DiffArgs),
    /// Remove snapshots by a retention policy (and optionally prune).
    Forget(Box<crate::commands::forget::ForgetArgs>),
    /// Delete data no snapshot references, safely while backups run.
    #[command(after_help = crate::examples::PRUNE)]
    Prune(crate::commands::prune::PruneArgs),
    /// Verify the repository: structure, object names, and optionally the data.
    #[command(after_help = crate::examples::CHECK)]
    Check(crate::commands::check::CheckArgs),
    /// Rebuild the index or rewrite damaged snapshots.
    #[command(subcommand, after_help = crate::examples::REPAIR)]
    Repair(crate::commands::repair::RepairCommand),
    /// Copy snapshots to another repository created with `init --like`, as ciphertext.
    #[command(after_help = crate::examples::COPY)]
    Copy(crate::commands::copy::CopyArgs),
    /// Show or change what write keys may do: append-only (the default), or also apply
    /// retention (forget, prune, repair) on the backup hosts.
    #[command(subcommand, after_help = crate::examples::POLICY)]
    Policy(PolicyCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  cairn completions bash > /etc/bash_completion.d/cairn\n  \
        cairn completions zsh > \"${fpath[1]}/_cairn\"\n  \
        cairn completions fish > ~/.config/fish/completions/cairn.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Generate files from cairn's own definitions (man pages) and deployment files for jobs
    /// (systemd units, Kubernetes CronJobs).
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Check the configuration file (jobs and repositories).
    #[command(subcommand)]
    Config(crate::commands::jobs::ConfigCommand),
    /// Run jobs of the configuration file now: backup, retention, copies, audit.
    Run(crate::commands::jobs::run::RunArgs),
    /// List the configured jobs with their next run times, in each job's time zone.
    Jobs(crate::commands::jobs::JobsArgs),
    /// Run the configured jobs on their schedules, with /metrics over HTTP.
    Daemon(crate::commands::jobs::daemon::DaemonArgs),
    /// List and show host presets (`backup host --preset`).
    #[command(subcommand)]
    Presets(crate::commands::presets::PresetsCommand),
    /// Restore to a fresh host: compare a snapshot's recorded inventory with this host.
    #[command(subcommand)]
    Host(crate::commands::host::HostCommand),
}

/// `cairn policy …`.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Say whether write keys are append-only.
    Show,
    /// Let write keys forget, prune and repair (needs the identity). For small setups that
    /// keep retention on the hosts; a compromised host can then erase history through cairn.
    AllowHostRetention,
    /// Make write keys append-only again (needs the identity).
    DenyHostRetention,
}

/// What `cairn generate` writes.
#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Write man pages (cairn.1, cairn-backup.1, …) into a directory.
    #[command(after_help = "Example:\n  cairn generate man /usr/local/share/man/man1 && mandb -q")]
    Man {
        /// Directory to write the pages into (created if missing).
        dir: PathBuf,
    },
    /// Write a systemd service and timer for a job (cairn-JOB.service, cairn-JOB.timer).
    Systemd(crate::commands::jobs::systemd::SystemdArgs),
    /// Write a Kubernetes CronJob for a job on OpenShift control-plane nodes (YAML).
    Cronjob(crate::commands::jobs::cronjob::CronJobArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// age X25519 recipient (age1…) that may read everything. Repeatable.
    #[arg(long = "recipient", value_name = "AGE1…")]
    pub recipients: Vec<String>,
    /// File of recipients, one per line, `#` comments (the age CLI's format). Repeatable.
    #[arg(long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
    /// Average content-defined chunk size in KiB for general files (minimum is a quarter,
    /// maximum four times). Smaller chunks deduplicate scattered changes better and cost more
    /// index memory. Fixed for the repository's life.
    #[arg(long, value_name = "KIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub chunk_size: u32,
    /// Target size of pack files in MiB. Larger packs mean fewer objects and requests on
    /// object stores (packs over 32 MiB are uploaded to them in parts); smaller ones waste less
    /// when prune repacks. Fixed for the repository's life.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub pack_size: u32,
    /// Create a copy target of this repository: same keys, chunker parameters and id, so
    /// `cairn copy` can move snapshots between the two without decrypting them (works with a
    /// write key). Recipients and --chunk-size are then taken from it.
    #[arg(long, value_name = "REPO", conflicts_with_all = ["recipients", "recipients_files"])]
    pub like: Option<String>,
    /// Let write keys apply retention (forget, prune, repair) from the start; by default they
    /// are append-only (see `cairn policy`).
    #[arg(long)]
    pub allow_host_retention: bool,
    /// S3 Object Lock: every object is written with a retention of DAYS days, and prune extends
    /// it for what it keeps. The bucket must have been created with Object Lock enabled.
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36500), conflicts_with = "like")]
    pub object_lock_days: Option<u32>,
    /// Object Lock mode: compliance (nobody can shorten or remove the retention) or
    /// governance (users allowed s3:BypassGovernanceRetention can).
    #[arg(long, value_name = "MODE", default_value = "compliance", value_parser = ["compliance", "governance"], requires = "object_lock_days")]
    pub object_lock_mode: String,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a new age identity (mode 0600) and print its recipient on stdout.
    #[command(after_help = crate::examples::KEY_GENERATE)]
    Generate {
        /// Where to write the identity (must not exist; missing directories are created with
        /// mode 0700), or `-` for stdout (the recipient then goes to stderr).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// List the key objects: what each is, whether your credentials open it and, for those
    /// they open, its label and creation time.
    List,
    /// Remove a key object (needs the identity or passphrase): an old passphrase, a departed
    /// administrator's recipients, or one planted in the storage. Refuses the last key object,
    /// and the last one your credentials open unless --force.
    Remove {
        /// Key object id, or a unique prefix of it (from `cairn key list`).
        id: String,
        /// Remove it even though your credentials open no other key object.
        #[arg(long)]
        force: bool,
    },
    /// Add a key object for another administrator's recipients or a new passphrase (needs
    /// the identity or passphrase). It holds the same secrets: whoever opens it reads
    /// everything, including what was written before.
    #[command(group(clap::ArgGroup::new("to").required(true).args(["recipients", "recipients_files", "new_passphrase_file"])))]
    #[command(after_help = crate::examples::KEY_ADD)]
    Add {
        /// An X25519 age recipient (age1…) whose identity will open the new key object.
        /// Repeatable.
        #[arg(long = "recipient", value_name = "RECIPIENT")]
        recipients: Vec<String>,
        /// A file of recipients, one per line (# comments). Repeatable.
        #[arg(long = "recipients-file", value_name = "FILE")]
        recipients_files: Vec<PathBuf>,
        /// A file whose first line is the passphrase that will open the new key object.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["recipients", "recipients_files"])]
        new_passphrase_file: Option<PathBuf>,
        /// A name for the new key object (e.g. the administrator), shown by `key list`.
        #[arg(long, value_name = "LABEL")]
        label: Option<String>,
    },
    /// Change the passphrase: add a key object for the new one, then remove the ones the
    /// current passphrase (--passphrase-file) opens.
    Passwd {
        /// A file whose first line is the new passphrase.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: PathBuf,
        /// A name for the new key object, shown by `key list`.
        #[arg(long, value_name = "LABEL")]
        label: Option<String>,
    },
    /// Export the repository's write key (needs the identity or passphrase).
    #[command(after_help = crate::examples::WRITE_KEY)]
    WriteKey {
        /// Where to write the write key (mode 0600; must not exist), or `-` for stdout.
        #[arg(short, long)]
        output: PathBuf,
        /// A name for the host that will hold this key (e.g. master-0), recorded in every
        /// snapshot it writes so `cairn snapshots --key-label` lists them. A name, not an
        /// authentication: the holder can edit it.
        #[arg(long, value_name = "LABEL")]
        label: Option<String>,
    },
}

/// Selects snapshots: which one `latest` names, and which ones `snapshots` lists, `forget`
/// applies its policy to and `copy` copies when given no ids.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Snapshot selection (all given must match)")]
pub struct SnapshotFilter {
    /// Only snapshots of this host.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub host: Option<String>,
    /// Only snapshots with this tag. Repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots of this source kind (as `cairn snapshots` shows it).
    #[arg(long, value_name = "KIND")]
    pub source: Option<SourceArg>,
    /// Only snapshots that recorded this absolute path (as `cairn snapshots` lists it; a
    /// trailing / is ignored). Repeatable.
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// Only snapshots written with the write key of this label (`key write-key --label`).
    #[arg(long, value_name = "LABEL")]
    pub key_label: Option<String>,
}

/// A source kind as `--source` takes it, named as `cairn snapshots` shows it: a kind of the
/// format, or `host`/`stdin` (snapshots of kind `paths` that `backup host`/`backup stdin` wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceArg {
    pub kind: SourceKind,
    /// `Some` for `host` and `stdin`.
    pub made_by: Option<&'static str>,
}

impl SourceArg {
    const fn kind(kind: SourceKind) -> Self {
        SourceArg {
            kind,
            made_by: None,
        }
    }
    const fn paths_by(command: &'static str) -> Self {
        SourceArg {
            kind: SourceKind::Paths,
            made_by: Some(command),
        }
    }
}

impl clap::ValueEnum for SourceArg {
    fn value_variants<'a>() -> &'a [Self] {
        const ALL: &[SourceArg] = &[
            SourceArg::kind(SourceKind::Paths),
            SourceArg::kind(SourceKind::Etcd),
            SourceArg::kind(SourceKind::StaticPods),
            SourceArg::kind(SourceKind::Cluster),
            SourceArg::kind(SourceKind::Project),
            SourceArg::paths_by("host"),
            SourceArg::paths_by("stdin"),
        ];
        ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        if let Some(command) = self.made_by {
            let help = match command {
                "host" => "host backups (`cairn backup host`; also matched by `paths`)",
                _ => "command output (`cairn backup stdin`; also matched by `paths`)",
            };
            return Some(clap::builder::PossibleValue::new(command).help(help));
        }
        // Exhaustive: a new kind does not compile until it is described (and listed above).
        let help = match self.kind {
            SourceKind::Paths => {
                "files and directories (`cairn backup PATH...`, host and stdin backups)"
            }
            SourceKind::Etcd => "etcd snapshots",
            SourceKind::StaticPods => "static pod resources",
            SourceKind::Cluster => "etcd and static pod resources taken together",
            SourceKind::Project => "exports of a project's API objects",
        };
        Some(clap::builder::PossibleValue::new(self.kind.name()).help(help))
    }
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub source: Option<BackupSource>,
    /// Files and directories to back up (write `./etcd` for a directory named like a source).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub common: BackupCommon,
    #[command(flatten)]
    pub walk: WalkArgs,
}

/// What every backup records.
#[derive(Args, Debug, Clone, Default)]
pub struct BackupCommon {
    /// Tag the snapshot. Repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this host's name).
    #[arg(long)]
    pub host: Option<String>,
}

/// How directories are walked.
#[derive(Args, Debug, Clone, Default)]
pub struct WalkArgs {
    /// Exclude paths matching this glob (`*.log`, `/etc/kubernetes/tmp/**`); a pattern without
    /// `/` matches file names anywhere. Repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Read exclude globs from a file, one per line, `#` comments.
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Do not cross file system boundaries below each given path.
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Read every file even if unchanged since the previous snapshot.
    #[arg(long)]
    pub force: bool,
}

/// Control-plane sources.
#[derive(Subcommand, Debug)]
pub enum BackupSource {
    /// Back up etcd: a live snapshot from one healthy member, or a snapshot file.
    #[command(after_help = crate::examples::BACKUP_ETCD)]
    Etcd(EtcdArgs),
    /// Back up the latest revision of each static pod's resources.
    #[command(after_help = crate::examples::BACKUP_STATIC_PODS)]
    StaticPods(StaticPodsArgs),
    /// Back up etcd and the static pod resources together, in one snapshot.
    #[command(after_help = crate::examples::BACKUP_CLUSTER)]
    Cluster(ClusterArgs),
    /// Export every object of projects (namespaces) from the Kubernetes API, normalised for
    /// re-creation, one YAML document per object.
    #[command(after_help = crate::examples::BACKUP_PROJECT)]
    Project(ProjectArgs),
    /// Back up a host's configuration by node role (presets) with its inventory: packages,
    /// OS release, kernel, hostname, MachineConfig.
    Host(Box<crate::commands::backup::host::HostArgs>),
    /// Store a command's output, or standard input, as one file (restic's
    /// --stdin-from-command / --stdin --stdin-filename).
    Stdin(crate::commands::backup::stdin::StdinArgs),
}

/// How to reach a Kubernetes API server.
#[derive(Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// kubeconfig file (default: KUBECONFIG, ~/.kube/config, else the pod's service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl KubeArgs {
    /// The engine's connection settings.
    pub fn connection(&self) -> cairn_store::project::Connection {
        cairn_store::project::Connection {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ProjectArgs {
    /// Namespaces (projects) to export.
    #[arg(required_unless_present = "all_namespaces", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Export every namespace of the cluster.
    #[arg(short = 'A', long, conflicts_with = "namespaces")]
    pub all_namespaces: bool,
    /// With --all-namespaces: leave out namespaces matching this glob (`openshift-*`).
    /// Repeatable.
    #[arg(
        long = "exclude-namespace",
        value_name = "GLOB",
        requires = "all_namespaces"
    )]
    pub exclude_namespaces: Vec<String>,
    /// Keep objects a controller regenerates (Pods of ReplicaSets, ReplicaSets of
    /// Deployments, Endpoints, EndpointSlices).
    #[arg(long)]
    pub include_owned: bool,
    /// Objects per list request.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub page_size: u32,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub common: BackupCommon,
}

/// A duration that is not zero (`10s`, `500ms`, `1m`; a plain number is seconds).
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match cairn_store::job::schedule::parse_duration(s)? {
        d if d.is_zero() => Err(format!(
            "{s:?}: a timeout of zero never lets a member answer"
        )),
        d => Ok(d),
    }
}

/// Where the etcd snapshot comes from.
#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// Client URLs, comma-separated, in order of preference (put the local member first); the
    /// first healthy one is used.
    #[arg(
        long,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        required_unless_present = "snapshot_file"
    )]
    pub endpoints: Vec<String>,
    /// CA bundle that signed the etcd server certificates.
    #[arg(long, env = "ETCDCTL_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long, env = "ETCDCTL_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client key for etcd (named --cert-key because --key is the write key).
    #[arg(long, env = "ETCDCTL_KEY", value_name = "FILE")]
    pub cert_key: Option<PathBuf>,
    /// How long to wait for a member to connect and answer the health check (`10s`, `1m`;
    /// a plain number is seconds). etcdctl's --dial-timeout and ETCDCTL_DIAL_TIMEOUT.
    #[arg(
        long,
        visible_alias = "dial-timeout",
        env = "ETCDCTL_DIAL_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = parse_timeout
    )]
    pub timeout: std::time::Duration,
    /// Ingest a file written by `etcdctl snapshot save` / cluster-backup.sh instead of a live
    /// snapshot.
    #[arg(long, value_name = "FILE", conflicts_with = "endpoints")]
    pub snapshot_file: Option<PathBuf>,
    /// Accept a snapshot file without a valid sha256 trailer (restoring it will then need
    /// `etcdctl snapshot restore --skip-hash-check`).
    #[arg(long, requires = "snapshot_file")]
    pub skip_hash_check: bool,
    /// Cluster version to record (e.g. 4.14.12); read from the ClusterVersion object when
    /// the snapshot holds one.
    #[arg(long)]
    pub cluster_version: Option<String>,
    #[command(flatten)]
    pub common: BackupCommon,
}

#[derive(Args, Debug, Clone)]
pub struct StaticPodsArgs {
    /// Directory holding `<component>-pod-<revision>` directories.
    #[arg(long, default_value = cairn_store::source::static_pods::DEFAULT_DIR)]
    pub dir: PathBuf,
    #[command(flatten)]
    pub common: BackupCommon,
}

#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Directory holding `<component>-pod-<revision>` directories.
    #[arg(long, default_value = cairn_store::source::static_pods::DEFAULT_DIR)]
    pub static_pods_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot: id, unique id prefix, or `latest`.
    pub snapshot: String,
    /// Only below this path.
    pub path: Option<String>,
    /// Long listing: mode, owner, size, modification time.
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    /// Snapshot: id, unique id prefix, or `latest`.
    pub snapshot: String,
    /// Absolute path of the file inside the snapshot.
    pub path: String,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Restore checks the whole target before writing anything: it refuses, naming the paths, when a \
file is in the way (unless --overwrite) or a non-directory sits where a directory goes, and when \
an --include pattern matches nothing. Existing directories are kept as they are unless \
--overwrite. Temporary files of killed restores (.cairn-restore-PID-N, PID gone) are removed \
from the directories restored into.

Examples:
  cairn restore latest -i id.txt --target /srv/restore --include '/etc/kubernetes/**' --dry-run
  cairn restore 3f2a9c1d -i id.txt --target / --overwrite")]
pub struct RestoreArgs {
    /// Snapshot: id, unique id prefix, or `latest`.
    pub snapshot: String,
    /// Directory to restore into (created if missing). Snapshot paths are recreated below it.
    /// Not needed with --apply.
    #[arg(short, long, default_value = "", hide_default_value = true,
          value_parser = clap::builder::TypedValueParser::map(clap::builder::OsStringValueParser::new(), PathBuf::from))]
    pub target: PathBuf,
    /// Only restore paths matching this glob (and everything below a matching directory).
    /// Repeatable.
    #[arg(long = "include", value_name = "GLOB")]
    pub includes: Vec<String>,
    /// Replace files that already exist in the target, and set the snapshot's owner, mode,
    /// xattrs and mtime on directories that already exist (default: refuse to start when any
    /// file is in the way; leave existing directories as they are).
    #[arg(long)]
    pub overwrite: bool,
    /// Create privileged entries: setuid/setgid files, files with capabilities
    /// (security.capability), device nodes, and entries outside the paths the snapshot
    /// records. Without it a restore holding any is refused before writing anything, naming
    /// them: a planted snapshot must not install them silently.
    #[arg(long)]
    pub allow_privileged: bool,
    /// Print what would be written (`new`), left alone (`keep`: existing directories),
    /// updated or replaced (with --overwrite), skipped, or is in the way (`conflict`), and
    /// write nothing, not even the target directory. Exits 1 if the restore would be refused.
    /// With --apply: the server validates every object without storing it.
    #[arg(long)]
    pub dry_run: bool,
    /// `tree`: the snapshot's files as they were. `cluster-backup`: for etcd and cluster
    /// snapshots, `snapshot_<ts>.db` and `static_kuberesources_<ts>.tar.gz` directly in the
    /// target, as cluster-restore.sh expects.
    #[arg(long, value_enum, default_value_t = Layout::Tree)]
    pub layout: Layout,
    /// Version of the cluster being restored; cairn warns when the backup is from another
    /// z-stream release (the platform requires the same one).
    #[arg(long)]
    pub cluster_version: Option<String>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
    #[command(flatten)]
    pub project: ProjectRestoreArgs,
}

/// Restoring project snapshots.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Project snapshots")]
pub struct ProjectRestoreArgs {
    /// Apply the objects to a cluster with server-side apply (field manager `cairn`), in
    /// creation order; nothing in the cluster is deleted.
    #[arg(long, conflicts_with_all = ["layout", "includes"])]
    pub apply: bool,
    /// Restore namespace OLD as NEW (objects, paths and service-account subjects). Repeatable.
    #[arg(long = "namespace-map", value_name = "OLD=NEW")]
    pub namespace_map: Vec<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Restore layouts.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Files as they were, below the target.
    Tree,
    /// What cluster-restore.sh consumes.
    ClusterBackup,
    /// Project snapshots: NS/GROUP/RESOURCE/NAME.yaml and a kustomization.yaml listing them
    /// in creation order (`kubectl apply -k TARGET`).
    Manifests,
}

const DIFF_HELP: &str = "\
With one side an id (or prefix) and the other `latest`, `latest` is the newest snapshot of the
same group as the given one: same host, source kind and (for file-system and project
snapshots) paths, as `forget` groups them. Any --host/--tag/--source/--path option replaces
that: `latest` is then the newest snapshot matching them. Which snapshot `latest` named is
reported on stderr (and as \"latest\" in --json).

Example: cairn diff 1a2b3c4d latest";

#[derive(Args, Debug)]
#[command(after_help = DIFF_HELP)]
pub struct DiffArgs {
    /// Older snapshot: id, unique id prefix, or `latest`.
    pub from: String,
    /// Newer snapshot: id, unique id prefix, or `latest`.
    pub to: String,
    /// Also list entries whose metadata alone changed (mode, owner, mtime, xattrs).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub metadata: bool,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}
