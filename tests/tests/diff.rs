//! `cairn diff`: added, removed, modified (content), metadata-only and type changes between
//! two snapshots, from the trees alone (a write key suffices).

use cairn_e2e::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;

fn diff_reports_every_kind_of_change(backend: Backend) {
    let fx = Fixture::on(backend);
    let src = fx.path("src");
    write_file(&src.join("same.yaml"), b"unchanged\n");
    write_file(&src.join("content.yaml"), b"replicas: 1\n");
    write_file(&src.join("sized.bin"), &random_bytes(51, 100_000));
    write_file(&src.join("mode.sh"), b"#!/bin/sh\n");
    write_file(&src.join("owner.conf"), b"owner\n");
    write_file(&src.join("xattr.conf"), b"xattr\n");
    write_file(&src.join("touched.conf"), b"touched\n");
    write_file(&src.join("gone/one.txt"), b"1");
    write_file(&src.join("gone/two.txt"), b"2");
    write_file(&src.join("becomes-dir"), b"file for now");
    symlink("same.yaml", src.join("link")).unwrap();
    stamp_mtimes(&src, 1_600_000_000);
    let s1 = Fixture::snap_id(&fx.backup(&[&src]));

    // Content, same size, same mtime: still a modification (ctime/inode differ, and content ids).
    let m = fs::metadata(src.join("content.yaml")).unwrap();
    write_file(&src.join("content.yaml"), b"replicas: 3\n");
    fs::File::options()
        .write(true)
        .open(src.join("content.yaml"))
        .unwrap()
        .set_modified(m.modified().unwrap())
        .unwrap();
    write_file(&src.join("sized.bin"), &random_bytes(52, 120_000));
    chmod(&src.join("mode.sh"), 0o755);
    if is_root() {
        std::os::unix::fs::chown(src.join("owner.conf"), Some(1234), Some(2345)).unwrap();
    }
    xattr::set(src.join("xattr.conf"), "user.note", b"added").unwrap();
    set_mtime(&src.join("touched.conf"), 1_700_000_000, 1);
    fs::remove_dir_all(src.join("gone")).unwrap();
    write_file(&src.join("new/added.txt"), b"new");
    fs::remove_file(src.join("becomes-dir")).unwrap();
    fs::create_dir(src.join("becomes-dir")).unwrap();
    fs::remove_file(src.join("link")).unwrap();
    symlink("content.yaml", src.join("link")).unwrap();
    let s2 = Fixture::snap_id(&fx.backup(&[&src]));

    let out = fx.wk(&["--json", "diff", &s1, &s2]);
    out.ok();
    let j = out.json();
    assert_eq!(j["from"], s1.as_str());
    assert_eq!(j["to"], s2.as_str());
    let mut got: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for c in j["changes"].as_array().unwrap() {
        let p = c["path"].as_str().unwrap();
        let rel = p
            .strip_prefix(s(&src))
            .unwrap_or_else(|| panic!("change outside the source: {p}\n{out}"))
            .to_string();
        let details = c["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        let prev = got.insert(rel, (c["change"].as_str().unwrap().to_string(), details));
        assert!(prev.is_none(), "{p} listed twice\n{out}");
    }
    let kind = |rel: &str| {
        got.get(rel)
            .unwrap_or_else(|| panic!("{rel} not in diff\n{out}"))
            .0
            .clone()
    };
    let details = |rel: &str| got[rel].1.join("; ");
    assert_eq!(kind("/content.yaml"), "modified");
    assert_eq!(kind("/sized.bin"), "modified");
    assert!(details("/sized.bin").contains("100000") && details("/sized.bin").contains("120000"));
    assert_eq!(kind("/mode.sh"), "metadata");
    assert!(details("/mode.sh").contains("0644") && details("/mode.sh").contains("0755"));
    if is_root() {
        assert_eq!(kind("/owner.conf"), "metadata");
        assert!(
            details("/owner.conf").contains("1234"),
            "{}",
            details("/owner.conf")
        );
        assert!(
            details("/owner.conf").contains("2345"),
            "{}",
            details("/owner.conf")
        );
    }
    assert_eq!(kind("/xattr.conf"), "metadata");
    assert_eq!(kind("/touched.conf"), "metadata");
    assert!(details("/touched.conf").contains("mtime"));
    assert_eq!(kind("/gone"), "removed");
    assert_eq!(kind("/gone/one.txt"), "removed");
    assert_eq!(kind("/gone/two.txt"), "removed");
    assert_eq!(kind("/new"), "added");
    assert_eq!(kind("/new/added.txt"), "added");
    assert_eq!(kind("/becomes-dir"), "type");
    assert_eq!(kind("/link"), "metadata");
    assert!(details("/link").contains("content.yaml"));
    assert!(
        !got.contains_key("/same.yaml"),
        "unchanged file listed\n{out}"
    );

    // Text form: one line per change and a summary.
    let out = fx.wk(&["diff", &s1, &s2]);
    out.ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("+ ") && l.ends_with("/new/added.txt")),
        "{out}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("- ") && l.ends_with("/gone")),
        "{out}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("M ") && l.contains("/content.yaml")),
        "{out}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("U ") && l.contains("/mode.sh")),
        "{out}"
    );
    let summary = if is_root() {
        "2 added, 3 removed, 2 modified, 5 metadata only, 1 type changed"
    } else {
        "2 added, 3 removed, 2 modified, 4 metadata only, 1 type changed"
    };
    assert!(out.stdout.contains(summary), "{out}");

    // --metadata=false hides metadata-only changes.
    let out = fx.wk(&["--json", "diff", "--metadata", "false", &s1, &s2]);
    out.ok();
    let changes = out.json()["changes"].as_array().unwrap().clone();
    assert!(changes.iter().all(|c| c["change"] != "metadata"), "{out}");
    assert!(changes.iter().any(|c| c["change"] == "modified"));

    // Reversed: added and removed swap.
    let out = fx.wk(&["--json", "diff", &s2, &s1]);
    out.ok();
    let rev = out.json();
    let find = |p: &str| {
        rev["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == format!("{}{p}", s(&src)).as_str())
            .map(|c| c["change"].as_str().unwrap().to_string())
    };
    assert_eq!(find("/gone").as_deref(), Some("added"));
    assert_eq!(find("/new/added.txt").as_deref(), Some("removed"));

    // A snapshot against itself: nothing.
    let out = fx.wk(&["--json", "diff", &s2, "latest"]);
    out.ok();
    assert_eq!(out.json()["changes"], serde_json::json!([]));
}
backend_tests!(diff_reports_every_kind_of_change);
