//! Host backups: presets against fake host roots (one per role, paths missing on purpose),
//! `--preset auto`, explicit paths that must exist, the inventory (the package list from a
//! real rpm database below an RHCOS-like root, a dpkg database below a Debian-like one, and
//! this machine's own), `host compare` against databases changed with the real rpm, command
//! capture (a failing command saves nothing), and the restore dry-run of a host snapshot.

use cairn_e2e::*;
use std::fs;
use std::path::{Path, PathBuf};

const OS_RELEASE: &str =
    "NAME=\"Fake Linux\"\nID=fakelinux\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"Fake Linux 9.4\"\n";

/// A fake OpenShift 4 control-plane root: static pod resources, manifests, kubelet config, the
/// MachineConfig Daemon's current config. /etc/crio, the kubelet drop-ins and the CA anchors
/// are missing on purpose.
fn ocp4_root(fx: &Fixture) -> PathBuf {
    let r = fx.dir("ocp4-root");
    write_file(
        &r.join("etc/kubernetes/static-pod-resources/kube-apiserver-pod-7/secrets/key"),
        b"encryption key\n",
    );
    write_file(
        &r.join("etc/kubernetes/manifests/kube-apiserver-pod.yaml"),
        b"kind: Pod\n",
    );
    write_file(&r.join("etc/kubernetes/kubeconfig"), b"apiVersion: v1\n");
    write_file(
        &r.join("var/lib/kubelet/config.yaml"),
        b"kind: KubeletConfiguration\n",
    );
    write_file(&r.join("var/lib/kubelet/pods/not-saved"), b"x");
    write_file(
        &r.join("etc/machine-config-daemon/currentconfig"),
        br#"{"metadata":{"name":"rendered-master-abc"}}"#,
    );
    write_file(&r.join("etc/containers/registries.conf"), b"[registries]\n");
    write_file(&r.join("etc/os-release"), OS_RELEASE.as_bytes());
    // RHCOS keeps its rpm database in /usr/share/rpm, with /var/lib/rpm a link to it.
    let db = r.join("usr/share/rpm");
    fs::create_dir_all(r.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("../../usr/share/rpm", r.join("var/lib/rpm")).unwrap();
    sh("rpm", &["--dbpath", s(&db), "--initdb"]);
    for (name, epoch, version) in RHCOS_PACKAGES {
        rpm_package(fx, &db, "-i", name, epoch, version);
    }
    r
}

/// The packages of [`ocp4_root`]'s rpm database: name, epoch, version-release.
const RHCOS_PACKAGES: [(&str, Option<u32>, &str); 3] = [
    ("cri-o", Some(0), "1.29.1-2.rhaos4.16.el9"),
    ("openshift-kubelet", None, "4.16.0-202406.el9"),
    ("podman", Some(4), "4.9.4-5.el9"),
];

/// [`RHCOS_PACKAGES`] as `rpm -qa` lists them: `NAME\tEPOCH:VERSION-RELEASE\tARCH` lines,
/// sorted.
fn rhcos_list() -> Vec<String> {
    let mut lines: Vec<String> = RHCOS_PACKAGES
        .iter()
        .map(|(name, epoch, version)| {
            let epoch = epoch.map_or("(none)".to_string(), |e| e.to_string());
            format!("{name}\t{epoch}:{version}\tnoarch")
        })
        .collect();
    lines.sort();
    lines
}

/// The files of `dir`: name, length and modification time, sorted.
fn files_of(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The lines of `text`, sorted.
fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The noarch rpm package NAME (EPOCH if given) at VERSION-RELEASE, built with rpmbuild and
/// written into the rpm database `db` by `rpm OP --justdb` (no files): `-i` installs, `-U`
/// upgrades.
fn rpm_package(fx: &Fixture, db: &Path, op: &str, name: &str, epoch: Option<u32>, version: &str) {
    let (version, release) = version.split_once('-').expect("VERSION-RELEASE");
    let dir = fx.dir(&format!("rpmbuild/{name}-{version}-{release}"));
    let spec = dir.join("package.spec");
    let epoch = epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default();
    write_file(
        &spec,
        format!(
            "Name: {name}\nVersion: {version}\nRelease: {release}\n{epoch}Summary: cairn test\n\
             License: MIT\nBuildArch: noarch\n%description\ncairn test\n%files\n"
        )
        .as_bytes(),
    );
    let defines = [
        format!("_topdir {}", dir.join("top").display()),
        format!("_rpmdir {}", dir.display()),
    ];
    sh(
        "rpmbuild",
        &[
            "-bb",
            "--quiet",
            "--define",
            &defines[0],
            "--define",
            &defines[1],
            s(&spec),
        ],
    );
    let package = dir.join(format!("noarch/{name}-{version}-{release}.noarch.rpm"));
    sh(
        "rpm",
        &[
            "--dbpath",
            s(db),
            op,
            "--justdb",
            "--nodeps",
            "--noscripts",
            s(&package),
        ],
    );
}

fn facts(report: &serde_json::Value) -> &serde_json::Map<String, serde_json::Value> {
    report["facts"].as_object().expect("facts")
}

/// `backup host --preset PRESET --root ROOT EXTRA…` with the write key.
fn backup_host(fx: &Fixture, preset: &str, root: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["backup", "host", "--preset", preset, "--root", s(root)];
    args.extend_from_slice(extra);
    fx.wk(&args)
}

fn snapshot_count(fx: &Fixture) -> usize {
    fx.object_names("snapshots").len()
}

/// What this machine's dpkg-query lists, as cairn records it.
/// This machine's installed packages as `NAME\tVERSION\tARCH` lines (not those removed with
/// their configuration files left, which dpkg-query lists too).
fn dpkg_list() -> Vec<u8> {
    let all = sh(
        "dpkg-query",
        &[
            "-W",
            "-f",
            "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n",
        ],
    );
    let mut out = Vec::new();
    for line in all.split(|b| *b == b'\n') {
        if let Some(tab) = line.iter().position(|b| *b == b'\t') {
            if matches!(line.get(1), Some(b'i' | b't' | b'W')) {
                out.extend_from_slice(&line[tab + 1..]);
                out.push(b'\n');
            }
        }
    }
    out
}

#[test]
fn auto_picks_the_role_records_absent_paths_and_the_inventory() {
    let fx = Fixture::new();
    let root = ocp4_root(&fx);
    let db_files = || files_of(&root.join("usr/share/rpm"));
    let before = db_files();
    let out = backup_host(&fx, "auto", &root, &["--json"]);
    out.ok();
    // rpm read a copy: nothing below the root was written (its sqlite adds files beside a
    // database it opens).
    assert_eq!(db_files(), before);
    let report = out.json();
    let f = facts(&report);
    assert_eq!(f["host.presets"], "ocp4-control-plane");
    assert_eq!(f["host.preset_selection"], "auto");
    let absent = f["host.absent"].as_str().unwrap();
    for p in [
        "/etc/crio",
        "/etc/systemd/system/kubelet.service.d",
        "/etc/pki/ca-trust/source/anchors",
    ] {
        assert!(absent.lines().any(|l| l == p), "{p} not absent: {absent}");
    }
    assert_eq!(f["inventory.package_manager"], "rpm");
    assert_eq!(f["inventory.packages"], "3");
    assert_eq!(f["inventory.os"], "Fake Linux 9.4");
    let snap = Fixture::snap_id(&report);

    // Host paths, not paths below the fake root; the inventory beside them.
    let ls = fx.id(&["ls", &snap]);
    ls.ok();
    for p in [
        "/etc/kubernetes/static-pod-resources/kube-apiserver-pod-7/secrets/key",
        "/etc/kubernetes/manifests/kube-apiserver-pod.yaml",
        "/var/lib/kubelet/config.yaml",
        "/etc/containers/registries.conf",
        "/.cairn/inventory/packages.tsv",
        "/.cairn/inventory/os-release",
        "/.cairn/inventory/kernel",
        "/.cairn/inventory/hostname",
        "/.cairn/inventory/machineconfig.json",
    ] {
        assert!(ls.stdout.lines().any(|l| l == p), "{p} missing:\n{ls}");
    }
    assert!(!ls.stdout.contains("not-saved"), "{ls}");
    assert!(!ls.stdout.contains(s(&root)), "{ls}");
    // The packages of the root's rpm database (not this machine's), and its os-release.
    let cat = fx.id(&["cat", &snap, "/.cairn/inventory/packages.tsv"]);
    assert_eq!(sorted_lines(&cat.ok().stdout), rhcos_list());
    let cat = fx.id(&["cat", &snap, "/.cairn/inventory/package-manager"]);
    assert_eq!(cat.ok().stdout, "rpm\n");
    let cat = fx.id(&["cat", &snap, "/.cairn/inventory/os-release"]);
    assert_eq!(cat.ok().stdout, OS_RELEASE);

    // The same host compared with itself is fit.
    let cmp = fx.id(&["--json", "host", "compare", &snap, "--root", s(&root)]);
    cmp.ok();
    let c = &cmp.json()["comparison"];
    assert_eq!(c["fit"], true, "{cmp}");
    assert_eq!(c["missing"].as_array().unwrap().len(), 0);
    assert_eq!(num(c, "matching"), 3, "{cmp}");
    assert_eq!(
        c["machineconfig"]["recorded"], "rendered-master-abc",
        "{cmp}"
    );
    assert_eq!(c["machineconfig"]["same"], true, "{cmp}");

    // A second backup reads nothing unchanged again (same recorded paths: the parent).
    let again = backup_host(&fx, "auto", &root, &["--json"]);
    let again = again.ok().json();
    assert_eq!(again["parent"].as_str(), Some(snap.as_str()));
    assert_eq!(
        num(&again, "files_read"),
        6,
        "only the inventory is read again"
    );
    // Without --json it says which presets auto picked and what is absent.
    let text = backup_host(&fx, "auto", &root, &[]);
    text.ok();
    text.stderr_has(&["picked ocp4-control-plane", "recorded as absent: /etc/crio"]);
    // Nothing changed on the host: the inventory, taken again, keeps its times, so `diff`
    // between the two backups is empty.
    let ids = fx.snapshot_ids();
    let diff = fx.id(&["diff", &ids[ids.len() - 2], &ids[ids.len() - 1]]);
    assert!(
        diff.ok()
            .stdout
            .starts_with("0 added, 0 removed, 0 modified, 0 metadata only"),
        "{diff}"
    );

    // `snapshots` names them host backups (kind `paths` in the format) with their presets.
    let list = fx.id(&["--json", "snapshots"]).ok().json();
    for snap in list.as_array().unwrap() {
        assert_eq!(snap["made_by"], "host", "{snap}");
        assert_eq!(snap["source"], "paths", "{snap}");
    }
    let list = fx.id(&["snapshots"]);
    assert!(
        list.ok()
            .stdout
            .lines()
            .skip(1)
            .filter(|l| l.contains(" host "))
            .count()
            == 3
            && list.stdout.contains("presets ocp4-control-plane"),
        "{list}"
    );
}

#[test]
fn each_role_is_recognised_and_a_bare_host_is_refused() {
    let fx = Fixture::new();
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "kubeadm",
            &[
                "etc/kubernetes/manifests/kube-apiserver.yaml",
                "etc/kubernetes/pki/ca.crt",
                "var/lib/kubelet/kubeadm-flags.env",
            ],
            "kubeadm-control-plane",
        ),
        (
            "kubeadm-worker",
            &[
                "etc/kubernetes/kubelet.conf",
                "var/lib/kubelet/kubeadm-flags.env",
            ],
            "kubeadm-node",
        ),
        (
            "ocp3",
            &[
                "etc/origin/master/master-config.yaml",
                "etc/origin/node/node-config.yaml",
                "etc/etcd/etcd.conf",
                "etc/sysconfig/atomic-openshift-node",
                "etc/sysconfig/docker-storage",
            ],
            "ocp3-master",
        ),
    ];
    for (name, files, want) in cases {
        let root = fx.dir(name);
        for f in files {
            write_file(&root.join(f), b"x\n");
        }
        let out = backup_host(&fx, "auto", &root, &["--no-inventory", "--json"]);
        out.ok();
        let report = out.json();
        assert_eq!(facts(&report)["host.presets"], want, "{name}: {out}");
        let ls = fx.id(&["ls", report["snapshot"].as_str().unwrap()]);
        for f in files {
            assert!(
                ls.ok().stdout.lines().any(|l| l == format!("/{f}")),
                "{name}: /{f} missing\n{ls}"
            );
        }
        assert!(!ls.stdout.contains("/.cairn"), "{ls}");
    }
    // The OpenShift 3 globs found their files.
    let presets = fx.run(&["presets", "show", "ocp3-master"]);
    presets.ok();
    assert!(presets.stdout.contains("/etc/sysconfig/atomic-openshift-*"));

    let before = snapshot_count(&fx);
    let bare = fx.dir("bare");
    let out = backup_host(&fx, "auto", &bare, &[]);
    out.code_is(1);
    out.stderr_has(&[
        "no preset's marker files",
        "ocp4-control-plane",
        "--preset NAME",
    ]);
    assert_eq!(snapshot_count(&fx), before);
}

#[test]
fn explicit_missing_paths_fail_and_user_presets_extend_built_ins() {
    let fx = Fixture::new();
    let root = ocp4_root(&fx);
    let before = snapshot_count(&fx);
    let out = backup_host(&fx, "ocp4-worker", &root, &["/etc/site-ca"]);
    out.code_is(1);
    out.stderr_has(&["/etc/site-ca does not exist", "must exist"]);
    assert_eq!(snapshot_count(&fx), before);
    let out = backup_host(&fx, "no-such-role", &root, &[]);
    out.code_is(2);
    out.stderr_has(&["no preset named", "presets list"]);
    // A preset none of whose paths exists (an image not mounted): refused, nothing saved.
    let empty = fx.dir("empty-root");
    let out = backup_host(&fx, "ocp4-worker", &empty, &[]);
    out.code_is(1);
    out.stderr_has(&[
        "none of the paths of preset ocp4-worker exists",
        "nothing was saved",
    ]);
    assert_eq!(snapshot_count(&fx), before);
    // A path below a symlinked directory of the root (RHCOS's /opt is a link to var/opt) is
    // resolved inside the root, as `cd -P` would on that host.
    write_file(&root.join("var/opt/agent/etc/agent.conf"), b"x\n");
    std::os::unix::fs::symlink("var/opt", root.join("opt")).unwrap();
    let out = backup_host(&fx, "ocp4-worker", &root, &["/opt/agent/etc", "--json"]);
    let ls = fx.id(&["ls", Fixture::snap_id(&out.ok().json()).as_str()]);
    assert!(
        ls.ok()
            .stdout
            .lines()
            .any(|l| l == "/var/opt/agent/etc/agent.conf"),
        "{ls}"
    );

    // A preset of the configuration file, extending a built-in one.
    write_file(&root.join("etc/site/ca.pem"), b"pem\n");
    let config = fx.path("cairn.toml");
    write_file(
        &config,
        b"[jobs.nightly]\nschedule = \"daily\"\n\n[presets.site-worker]\nextends = \"ocp4-worker\"\npaths = [\"/etc/site\"]\n",
    );
    let cfg = [("CAIRN_CONFIG", config.as_os_str())];
    let list = fx.run_env(&["presets", "list"], &cfg);
    list.ok();
    assert!(list.stdout.contains("site-worker"), "{list}");
    let show = fx.run_env(&["--json", "presets", "show", "site-worker"], &cfg);
    let shown = show.ok().json();
    assert!(strs(&shown, "paths").contains("/etc/site"));
    assert!(strs(&shown, "paths").contains("/etc/kubernetes/kubeconfig"));
    let out = fx.wk_env(
        &[
            "--json",
            "backup",
            "host",
            "--preset",
            "site-worker",
            "--no-inventory",
            "--root",
            s(&root),
        ],
        &cfg,
    );
    let report = out.ok().json();
    let ls = fx.id(&["ls", report["snapshot"].as_str().unwrap()]);
    assert!(
        ls.ok().stdout.lines().any(|l| l == "/etc/site/ca.pem"),
        "{ls}"
    );
    assert!(ls.stdout.lines().any(|l| l == "/etc/kubernetes/kubeconfig"));
    // A broken file is named.
    write_file(&config, b"[presets.x]\nextends = \"nope\"\n");
    let out = fx.run_env(&["presets", "list"], &cfg);
    out.code_is(1);
    out.stderr_has(&["cairn.toml", "preset x", "nope"]);
}

/// dpkg's database of a Debian-like image: one package installed, one removed with its
/// configuration files left (not installed).
const DPKG_STATUS: &[u8] = b"Package: kubelet\nStatus: install ok installed\nMaintainer: t\n\
Architecture: amd64\nVersion: 1.29.3-1.1\nDescription: k\n\n\
Package: oldconf\nStatus: deinstall ok config-files\nMaintainer: t\nArchitecture: amd64\n\
Version: 0.1\nDescription: o\n";

#[test]
fn packages_come_from_the_database_below_the_root_or_from_this_machine() {
    let fx = Fixture::new();
    let debian = fx.dir("debian-root");
    write_file(
        &debian.join("etc/os-release"),
        b"ID=debian\nVERSION_ID=\"12\"\n",
    );
    write_file(&debian.join("etc/kubernetes/kubelet.conf"), b"x\n");
    write_file(&debian.join("var/lib/dpkg/status"), DPKG_STATUS);
    // dpkg's journal, not yet merged into status, counts too.
    write_file(
        &debian.join("var/lib/dpkg/updates/0001"),
        b"Package: kubeadm\nStatus: install ok installed\nMaintainer: t\nArchitecture: amd64\n\
          Version: 1.29.3-1.1\nDescription: k\n",
    );
    let host_backup = |root: &Path| {
        fx.wk(&[
            "--json",
            "backup",
            "host",
            "--root",
            s(root),
            "/etc/kubernetes",
        ])
    };
    let report = host_backup(&debian).ok().json();
    assert_eq!(facts(&report)["inventory.package_manager"], "dpkg");
    let snap = Fixture::snap_id(&report);
    let cat = fx.id(&["cat", &snap, "/.cairn/inventory/packages.tsv"]);
    assert_eq!(
        sorted_lines(&cat.ok().stdout),
        ["kubeadm\t1.29.3-1.1\tamd64", "kubelet\t1.29.3-1.1\tamd64"]
    );
    fx.id(&["host", "compare", &snap, "--root", s(&debian)])
        .ok();

    // Without --root: what this machine's dpkg-query lists.
    let here = fx.dir("here");
    write_file(&here.join("f"), b"x");
    let report = fx.wk(&["--json", "backup", "host", s(&here)]).ok().json();
    assert_eq!(facts(&report)["inventory.package_manager"], "dpkg");
    let cat = fx.id(&[
        "cat",
        &Fixture::snap_id(&report),
        "/.cairn/inventory/packages.tsv",
    ]);
    assert_eq!(cat.ok().stdout_bytes, dpkg_list());

    // A backup that records no package list, and says why.
    let without_packages = |root: &Path, why: &str| {
        let out = host_backup(root);
        out.ok();
        out.stderr_has(&[why, "no package list recorded"]);
        assert!(facts(&out.json())
            .get("inventory.package_manager")
            .is_none());
        out
    };

    // An rpm database this rpm cannot read (SUSE's ndb, say) is passed over, not recorded
    // as a host without packages, and nothing is written beside it.
    let suse = fx.dir("suse-root");
    write_file(&suse.join("etc/kubernetes/kubelet.conf"), b"x\n");
    write_file(
        &suse.join("usr/lib/sysimage/rpm/Packages.db"),
        &[0x5a; 8192],
    );
    let out = without_packages(&suse, "lists no installed package");
    assert_eq!(
        files_of(&suse.join("usr/lib/sysimage/rpm")).len(),
        1,
        "{out}"
    );
    // With a dpkg database beside it, that one is recorded.
    write_file(&suse.join("var/lib/dpkg/status"), DPKG_STATUS);
    let report = host_backup(&suse).ok().json();
    assert_eq!(facts(&report)["inventory.package_manager"], "dpkg");

    // A root without a package database records none and says why; compared with it, the
    // recorded packages cannot be checked: unfit.
    let bare = fx.dir("bare-root");
    write_file(&bare.join("etc/kubernetes/kubelet.conf"), b"x\n");
    without_packages(&bare, "no package database below");
    let cmp = fx.id(&["host", "compare", &snap, "--root", s(&bare)]);
    cmp.code_is(5);
    assert!(
        cmp.stdout
            .contains("this host's packages cannot be listed: no package database below"),
        "{cmp}"
    );
}

#[test]
fn compare_lists_missing_changed_and_extra_packages() {
    let fx = Fixture::new();
    let root = ocp4_root(&fx);
    let report = backup_host(&fx, "ocp4-worker", &root, &["--json"])
        .ok()
        .json();
    let snap = Fixture::snap_id(&report);
    // The root's database changed with the real rpm: one package erased, one upgraded, one
    // added.
    let db = root.join("usr/share/rpm");
    sh(
        "rpm",
        &["--dbpath", s(&db), "-e", "--justdb", "--nodeps", "cri-o"],
    );
    rpm_package(&fx, &db, "-U", "podman", Some(4), "5.0.2-1.el9");
    rpm_package(&fx, &db, "-i", "cairn-test-extra", None, "1.0-1");
    let cmp = fx.id(&["--json", "host", "compare", &snap, "--root", s(&root)]);
    cmp.code_is(5);
    let c = &cmp.json()["comparison"];
    assert_eq!(c["fit"], false);
    // `latest` is the latest host backup, even with a plain backup of the host after it.
    let plain = fx.dir("plain");
    write_file(&plain.join("f"), b"x");
    fx.backup(&[&plain]);
    let latest = fx.id(&["--json", "host", "compare", "latest", "--root", s(&root)]);
    latest.code_is(5);
    assert_eq!(latest.json()["snapshot"], report["snapshot"], "{latest}");
    let names = |k: &str| -> Vec<String> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("missing"), ["cri-o"]);
    assert_eq!(names("different"), ["podman"]);
    assert_eq!(c["different"][0]["recorded"][0], "4:4.9.4-5.el9", "{cmp}");
    assert_eq!(c["different"][0]["installed"][0], "4:5.0.2-1.el9", "{cmp}");
    assert_eq!(names("extra"), ["cairn-test-extra"]);
    // Another OS release below the root: unfit for that reason too (text output).
    write_file(
        &root.join("etc/os-release"),
        b"ID=fakelinux\nVERSION_ID=10\n",
    );
    write_file(
        &root.join("etc/machine-config-daemon/currentconfig"),
        br#"{"metadata":{"name":"rendered-master-def"}}"#,
    );
    let cmp = fx.id(&["host", "compare", &snap, "--root", s(&root)]);
    cmp.code_is(5);
    assert!(cmp.stdout.contains("verdict: unfit"), "{cmp}");
    assert!(cmp.stdout.contains("OS release differs"), "{cmp}");
    assert!(
        cmp.stdout.contains(
            "MachineConfig differs: recorded rendered-master-abc, this host rendered-master-def"
        ),
        "{cmp}"
    );
    // A snapshot without inventory is named as such.
    let plain = fx.backup(&[&root.join("etc/containers")]);
    let out = fx.id(&["host", "compare", &Fixture::snap_id(&plain)]);
    out.code_is(1);
    out.stderr_has(&["holds no host inventory", "backup host"]);
}

#[test]
fn command_capture_streams_output_and_a_failing_command_saves_nothing() {
    let fx = Fixture::new();
    let out = fx.wk(&[
        "--json",
        "backup",
        "stdin",
        "--filename",
        "/inventory/numbers.txt",
        "--",
        "seq",
        "1",
        "200000",
    ]);
    let report = out.ok().json();
    assert_eq!(facts(&report)["stdin.command"], "seq 1 200000");
    let snap = Fixture::snap_id(&report);
    let list = fx.id(&["--json", "snapshots"]).ok().json();
    assert_eq!(list[0]["made_by"], "stdin", "{list}");
    let none = fx
        .id(&["--json", "snapshots", "--source", "host"])
        .ok()
        .json();
    assert_eq!(none.as_array().unwrap().len(), 0, "{none}");
    let one = fx
        .id(&["--json", "snapshots", "--source", "stdin"])
        .ok()
        .json();
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    let cat = fx.id(&["cat", &snap, "/inventory/numbers.txt"]);
    assert_eq!(cat.ok().stdout_bytes, sh("seq", &["1", "200000"]));

    // Without a command: cairn's own standard input.
    let input = fx.path("dump.sql");
    write_file(&input, &text_bytes(7, 100_000));
    let env = fx.env();
    let args = fx.wk_args(&[
        "--json",
        "backup",
        "stdin",
        "--stdin-filename",
        "/dumps/app.sql",
    ]);
    let mut cmd = cairn_e2e::background::clean_command(&cairn_bin(), &env_refs(&env));
    cmd.args(&args).stdin(fs::File::open(&input).unwrap());
    let out = run_captured(cmd, cmdline(&cairn_bin(), &args));
    let report = out.ok().json();
    assert_eq!(facts(&report)["stdin.command"], "stdin");
    let cat = fx.id(&["cat", &Fixture::snap_id(&report), "/dumps/app.sql"]);
    assert_eq!(cat.ok().stdout_bytes, fs::read(&input).unwrap());

    // Streamed: 300 MB of output in far less memory.
    let args = fx.wk_args(&[
        "--json",
        "backup",
        "stdin",
        "--filename",
        "zeros",
        "--",
        "head",
        "-c",
        "300000000",
        "/dev/zero",
    ]);
    let (out, rss) = cairn_e2e::rss::cairn_with_rss(&args, &env_refs(&env));
    let report = out.ok().json();
    assert_eq!(num(&report, "bytes"), 300_000_000);
    assert!(rss < 200 << 20, "peak RSS {rss} bytes for 300 MB of output");

    let before = snapshot_count(&fx);
    let out = fx.wk(&[
        "backup",
        "stdin",
        "--stdin-filename",
        "dump.sql",
        "--",
        "sh",
        "-c",
        "echo partial output; echo 'pg_dump: connection refused' >&2; exit 7",
    ]);
    out.code_is(1);
    out.stderr_has(&[
        "exit status 7",
        "pg_dump: connection refused",
        "nothing was saved",
    ]);
    assert_eq!(snapshot_count(&fx), before);
    let out = fx.wk(&[
        "backup",
        "stdin",
        "--filename",
        "x",
        "--",
        "/nonexistent/cmd",
    ]);
    out.code_is(1);
    out.stderr_has(&["/nonexistent/cmd"]);
    let out = fx.wk(&["backup", "stdin", "--filename", "../x", "--", "true"]);
    out.failed();
    assert_eq!(snapshot_count(&fx), before);
}

#[test]
fn restore_dry_run_of_a_host_snapshot_lists_conflicts_and_writes_nothing() {
    let fx = Fixture::new();
    let root = ocp4_root(&fx);
    let report = backup_host(&fx, "ocp4-control-plane", &root, &["--json"])
        .ok()
        .json();
    let snap = Fixture::snap_id(&report);
    // A fresh host that already has a kubelet config of its own.
    let target = fx.dir("fresh-host");
    write_file(&target.join("var/lib/kubelet/config.yaml"), b"local\n");
    let listing = |d: &Path| scan_tree(d).into_keys().collect::<Vec<_>>();
    let before = listing(&target);
    let out = fx.restore(&snap, &target, &["--dry-run"]);
    out.code_is(1);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("conflict") && l.contains(" /var/lib/kubelet/config.yaml")),
        "{out}"
    );
    assert!(
        out.stdout.lines().any(|l| l.starts_with("new")
            && l.contains("/etc/kubernetes/manifests/kube-apiserver-pod.yaml")),
        "{out}"
    );
    assert!(out.stdout.lines().any(|l| l.starts_with("keep")), "{out}");
    assert_eq!(listing(&target), before, "the dry run wrote something");
    assert_eq!(
        fs::read(target.join("var/lib/kubelet/config.yaml")).unwrap(),
        b"local\n"
    );
    // With --overwrite it restores, the inventory with the rest.
    fx.restore(&snap, &target, &["--overwrite"]).ok();
    assert_eq!(
        fs::read(target.join("var/lib/kubelet/config.yaml")).unwrap(),
        b"kind: KubeletConfiguration\n"
    );
    assert_eq!(
        fs::read_to_string(target.join(".cairn/inventory/os-release")).unwrap(),
        OS_RELEASE
    );
}

#[test]
fn restore_into_a_mounted_root_maps_owners_by_its_passwd() {
    if !is_root() {
        eprintln!("skipped: owners are only restored as root");
        return;
    }
    let fx = Fixture::new();
    let src = fx.dir("src");
    write_file(&src.join("etcd.conf"), b"x\n");
    // `daemon` (uid and gid 1 on Debian and RHEL) is recorded by name.
    rustix::fs::chown(
        src.join("etcd.conf"),
        Some(rustix::fs::Uid::from_raw(1)),
        Some(rustix::fs::Gid::from_raw(1)),
    )
    .unwrap();
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    // The new host's disk, whose daemon user and group have other ids.
    let target = fx.dir("sysimage");
    write_file(
        &target.join("etc/passwd"),
        b"root:x:0:0::/root:/bin/sh\ndaemon:x:4242:4343::/:/sbin/nologin\n",
    );
    write_file(&target.join("etc/group"), b"root:x:0:\ndaemon:x:4343:\n");
    fx.restore(&snap, &target, &[]).ok();
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(Fixture::restored(&target, &src).join("etcd.conf")).unwrap();
    assert_eq!((m.uid(), m.gid()), (4242, 4343));
}

/// Runs a command with openat2 failing as on kernels before 5.6 (RHCOS of OpenShift 4.12 and
/// older): a seccomp filter answers the syscall (437 on every architecture) with ENOSYS.
const WITHOUT_OPENAT2: &str = r#"import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
LD_NR, JEQ, RET = 0x20, 0x15, 0x06
ERRNO_ENOSYS, ALLOW = 0x00050000 | 38, 0x7FFF0000
code = [(LD_NR, 0, 0, 0), (JEQ, 0, 1, 437), (RET, 0, 0, ERRNO_ENOSYS), (RET, 0, 0, ALLOW)]
insns = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in code))
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(len(code), ctypes.addressof(insns))
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
    sys.exit("seccomp: errno %d" % ctypes.get_errno())
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn without_openat2_links_resolve_inside_the_root_and_a_fifo_is_not_waited_on() {
    let fx = Fixture::new();
    let root = ocp4_root(&fx);
    // Nothing writes to these FIFOs: opening one to read it would wait for ever.
    sh("mkfifo", &[s(&root.join("usr/share/rpm/Packages"))]);
    let dpkg = root.join("var/lib/dpkg");
    fs::create_dir_all(&dpkg).unwrap();
    sh("mkfifo", &[s(&dpkg.join("status"))]);
    let wrapper = fx.path("without-openat2.py");
    write_file(&wrapper, WITHOUT_OPENAT2.as_bytes());
    let args = fx.wk_args(&[
        "--json",
        "backup",
        "host",
        "--preset",
        "ocp4-worker",
        "--root",
        s(&root),
    ]);
    let bin = cairn_bin();
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&wrapper)
        .arg(&bin)
        .args(&args)
        .envs(fx.env())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = run_captured(cmd, cmdline(&bin, &args));
    let report = out.ok().json();
    // The rpm database found through RHCOS's /var/lib/rpm link, resolved by hand.
    assert_eq!(facts(&report)["inventory.package_manager"], "rpm", "{out}");
    let cat = fx.id(&[
        "cat",
        &Fixture::snap_id(&report),
        "/.cairn/inventory/packages.tsv",
    ]);
    assert_eq!(sorted_lines(&cat.ok().stdout), rhcos_list());
}
