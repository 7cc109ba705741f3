//! The `Examples:` sections of `--help`, one per command, kept together so that they read as
//! one tutorial and are easy to keep true: a unit test parses every example line with the
//! real command-line definition.

/// `cairn --help`.
pub const TOP: &str = "\
Examples (set CAIRN_REPO and CAIRN_IDENTITY or CAIRN_KEY to drop -r, -i and -k):
  cairn key generate -o ~/.config/cairn/identity.txt        # prints the recipient age1…
  cairn init -r /mnt/backup/cluster1 --recipient age1…
  cairn key write-key -r /mnt/backup/cluster1 -i ~/.config/cairn/identity.txt -o write.key
  cairn backup -r /mnt/backup/cluster1 -k write.key /etc/kubernetes /etc/origin
  cairn snapshots -r /mnt/backup/cluster1 -k write.key
  cairn restore latest -r /mnt/backup/cluster1 -i ~/.config/cairn/identity.txt --target /srv/restore";

/// `cairn init`.
pub const INIT: &str = "\
Examples:
  cairn init -r /mnt/backup/cluster1 --recipient age1…
  cairn init -r s3://backups/cluster1 --s3-endpoint https://rgw.example:8443 --recipient age1…
  cairn init -r s3://backups/cluster1 --recipient age1… --object-lock-days 30
  cairn init -r s3://offsite/cluster1 --like /mnt/backup/cluster1 -k write.key   # for copy";

/// `cairn key generate`.
pub const KEY_GENERATE: &str = "\
Examples:
  cairn key generate -o ~/.config/cairn/identity.txt   # prints the recipient age1…
  (umask 077; cairn key generate -o - > identity.txt)  # the recipient goes to stderr";

/// `cairn key write-key`.
pub const WRITE_KEY: &str = "\
Examples:
  cairn key write-key -r /mnt/backup/cluster1 -i identity.txt -o write.key
  cairn key write-key -r /mnt/backup/cluster1 -i identity.txt --label master-0 -o master-0.key";

/// `cairn key add`.
pub const KEY_ADD: &str = "\
Examples:
  cairn key add -i identity.txt --recipient age1… --label alice
  cairn key add -i identity.txt --new-passphrase-file /root/dr-passphrase --label break-glass";

/// `cairn backup` (paths).
pub const BACKUP: &str = "\
Examples:
  cairn backup --tag daily /etc/kubernetes /var/lib/kubelet/config.yaml
  cairn backup --exclude '*.log' --exclude '/etc/kubernetes/tmp/**' /etc/kubernetes
  cairn backup /etc/kubernetes/     # a trailing / follows a symlink to the directory
  cairn backup etcd --snapshot-file /home/core/backup/snapshot.db
  cairn backup cluster --endpoints https://10.0.0.5:2379 --cacert ca.crt --cert c.crt --cert-key c.key";

/// `cairn backup etcd`.
pub const BACKUP_ETCD: &str = "\
Examples:
  cairn backup etcd --endpoints https://10.0.0.5:2379,https://10.0.0.6:2379 \\
      --cacert /etc/kubernetes/static-pod-certs/configmaps/etcd-serving-ca/ca-bundle.crt \\
      --cert etcd-peer.crt --cert-key etcd-peer.key
  cairn backup etcd --snapshot-file /home/core/backup/snapshot_2026-11-21_030000.db";

/// `cairn backup static-pods`.
pub const BACKUP_STATIC_PODS: &str = "\
Examples:
  cairn backup static-pods
  cairn backup static-pods --dir /etc/kubernetes/static-pod-resources";

/// `cairn backup cluster`.
pub const BACKUP_CLUSTER: &str = "\
Example (what cluster-backup.sh keeps, in one snapshot):
  cairn backup cluster --endpoints https://10.0.0.5:2379 --cacert ca.crt --cert c.crt --cert-key c.key
  cairn restore latest --source cluster -i identity.txt --layout cluster-backup --target /home/core/backup";

/// `cairn backup project`.
pub const BACKUP_PROJECT: &str = "\
Examples (kubeconfig: --kubeconfig, KUBECONFIG or ~/.kube/config; in a pod, its service account):
  cairn backup project shop payments
  cairn backup project --all-namespaces --exclude-namespace 'openshift-*' --exclude-namespace 'kube-*'
  cairn restore latest --layout manifests --target /tmp/shop
  cairn restore latest --apply --namespace-map shop=shop-dr --dry-run";

/// `cairn snapshots`.
pub const SNAPSHOTS: &str = "\
Examples:
  cairn snapshots
  cairn snapshots --host master-0 --source etcd
  cairn snapshots --json | jq -r '.[-1].id'";

/// `cairn ls`.
pub const LS: &str = "\
Examples:
  cairn ls latest
  cairn ls -l latest /etc/kubernetes/manifests";

/// `cairn cat`.
pub const CAT: &str = "\
Examples:
  cairn cat latest /etc/kubernetes/manifests/kube-apiserver-pod.yaml
  cairn cat --host master-0 latest /etc/kubernetes/kubelet.conf > kubelet.conf";

/// `cairn check`.
pub const CHECK: &str = "\
Examples:
  cairn check                         # structure (a write key is enough)
  cairn check --read-data-subset 1/7  # and a seventh of the packs: 1/7…7/7 on the days of a week
  cairn check --read-data             # every pack, every blob
  cairn check --no-key                # no key at all: every object matches its name

Exit status: 0 no damage; 4 damage (each object listed with what to do and the snapshots and
files it affects); 3 no damage, but snapshot objects a newer cairn wrote were not checked; 1
the check could not run (storage unreachable, a read refused: not damage).";

/// `cairn prune`.
pub const PRUNE: &str = "\
Examples:
  cairn prune --dry-run
  cairn prune";

/// `cairn copy`.
pub const COPY: &str = "\
Examples:
  cairn init -r s3://offsite/cluster1 --like /mnt/backup/cluster1 -k write.key
  cairn copy --from /mnt/backup/cluster1 --to s3://offsite/cluster1 -k write.key
  cairn copy --from /mnt/backup/cluster1 --to s3://offsite/cluster1 -k write.key --source etcd latest";

/// `cairn repair`.
pub const REPAIR: &str = "\
Examples (run `cairn check` first; it says which one applies):
  cairn repair index              # lost or damaged index objects: rebuilt from the packs
  cairn repair snapshots --dry-run
  cairn repair snapshots          # drop files whose data is gone, tag the snapshot `repaired`";

/// `cairn policy`.
pub const POLICY: &str = "\
Examples:
  cairn policy show
  cairn policy allow-host-retention -i identity.txt";

#[cfg(test)]
mod tests {
    use clap::Parser;

    const ALL: [&str; 18] = [
        super::TOP,
        super::INIT,
        super::KEY_GENERATE,
        super::WRITE_KEY,
        super::KEY_ADD,
        super::BACKUP,
        super::BACKUP_ETCD,
        super::BACKUP_STATIC_PODS,
        super::BACKUP_CLUSTER,
        super::BACKUP_PROJECT,
        super::SNAPSHOTS,
        super::LS,
        super::CAT,
        super::CHECK,
        super::PRUNE,
        super::COPY,
        super::REPAIR,
        super::POLICY,
    ];

    /// The command lines of a help text: continuation lines joined, comments, pipes and
    /// redirections cut, quotes dropped (no example quotes a space).
    fn command_lines(help: &str) -> Vec<Vec<String>> {
        let joined = help.replace("\\\n", " ");
        joined
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("cairn ")
                    .or_else(|| l.strip_prefix("(umask 077; cairn "))
            })
            .map(|l| {
                let l = l.split(" #").next().unwrap();
                let l = l.split(['|', '>', ')']).next().unwrap();
                std::iter::once("cairn".to_string())
                    .chain(l.split_whitespace().map(|w| w.replace('\'', "")))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_example_parses() {
        let mut n = 0;
        for help in ALL {
            for argv in command_lines(help) {
                if let Err(e) = crate::args::Cli::try_parse_from(&argv) {
                    panic!("{argv:?}: {e}");
                }
                n += 1;
            }
        }
        assert!(n > 40, "{n} example lines");
    }
}
