//! Every stored object is a standard age file: the `age` CLI decrypts it with the identity, the
//! plaintext is laid out as format/SPEC.md says, and object names are blake3 of the stored
//! bytes. Disaster recovery needs only the age CLI and the spec.

use cairn_e2e::*;
use cairn_format::index::IndexRecord;
use cairn_format::pack::{self, PackKind};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{NodeKind, Tree};
use cairn_format::Id;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `age -d -i identity file` → plaintext, or the error text.
fn age_decrypt(identity: &Path, file: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("age")
        .args(["-d", "-i", s(identity), s(file)])
        .output()
        .expect("running age (install the Debian package `age`)");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Check a pack plaintext's footer by hand (as SPEC §7 describes it), then parse it with
/// cairn-format.
fn check_pack_layout(plain: &[u8], kind: PackKind, what: &Path) -> pack::PackTrailer {
    let n = plain.len();
    assert!(n >= 16, "{} too short", what.display());
    assert_eq!(
        &plain[n - 4..],
        b"CPK1",
        "footer magic of {}",
        what.display()
    );
    let tlen = u32::from_le_bytes(plain[n - 8..n - 4].try_into().unwrap()) as usize;
    assert!(tlen + 8 <= n);
    let trailer = &plain[n - 8 - tlen..n - 8];
    assert_eq!(
        &trailer[..8],
        b"cairnP\x01\x00",
        "trailer header of {}",
        what.display()
    );
    let parsed = pack::parse_pack(plain).expect("parse_pack");
    assert_eq!(parsed.kind, kind, "{}", what.display());
    assert!(!parsed.blobs.is_empty());
    parsed
}

/// The meta identity of the write key, as an age identity file.
fn meta_identity_file(fx: &Fixture) -> PathBuf {
    let path = fx.path("meta-identity.txt");
    write_file(
        &path,
        format!("{}\n", fx.write_key_record().meta_identity).as_bytes(),
    );
    path
}

#[test]
fn age_cli_decrypts_a_data_pack_holding_the_file() {
    let fx = Fixture::new();
    let src = fx.path("src");
    // Below the chunker's 16 KiB minimum: one chunk, so one blob equal to the whole file. (It
    // was 20,000 bytes, which a repository's random chunker seed cuts in two about once in 70.)
    let content = text_bytes(11, 12_000);
    write_file(&src.join("manifest.yaml"), &content);
    fx.backup(&[&src]);

    let data = fx.objects("data");
    assert!(!data.is_empty(), "no data pack written");
    let mut found = false;
    for p in &data {
        let plain =
            age_decrypt(&fx.identity, p).unwrap_or_else(|e| panic!("age -d {}: {e}", p.display()));
        let trailer = check_pack_layout(&plain, PackKind::Data, p);
        for b in &trailer.blobs {
            let blob = pack::read_blob(&plain, b).expect("read_blob");
            assert_eq!(blob.len(), b.len as usize);
            if blob == content {
                found = true;
            }
        }
        // Nothing readable leaks: the file content is not in the ciphertext.
        let ct = fs::read(p).unwrap();
        assert!(!ct.windows(64).any(|w| w == &content[..64]));
        // The write key's meta identity cannot open a data pack, even with the age CLI.
        let meta = meta_identity_file(&fx);
        let err = age_decrypt(&meta, p).expect_err("meta identity opened a data pack");
        assert!(err.to_lowercase().contains("no identity matched"), "{err}");
    }
    assert!(found, "the file's content is not a blob of any data pack");
}

#[test]
fn age_cli_decrypts_tree_index_snapshot_and_key_objects() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("a/b.txt"), b"bee");
    write_file(&src.join("c.bin"), &random_bytes(12, 100_000));
    let snap = Fixture::snap_id(&fx.backup(&[&src]));
    let meta = meta_identity_file(&fx);

    let trees = fx.objects("tree");
    assert!(!trees.is_empty());
    for p in &trees {
        for id in [&fx.identity, &meta] {
            let plain = age_decrypt(id, p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let t = check_pack_layout(&plain, PackKind::Tree, p);
            for b in &t.blobs {
                let blob = pack::read_blob(&plain, b).unwrap();
                assert_eq!(&blob[..8], b"cairnT\x01\x00");
                Tree::decode(&blob).expect("tree blob decodes");
            }
        }
    }
    let index = fx.objects("index");
    assert_eq!(index.len(), 1);
    for id in [&fx.identity, &meta] {
        let plain = age_decrypt(id, &index[0]).unwrap();
        assert_eq!(&plain[..8], b"cairnI\x01\x00");
        let rec = IndexRecord::decode(&plain).unwrap();
        assert_eq!(rec.packs.len(), fx.objects("data").len() + trees.len());
    }
    let snaps = fx.objects("snapshots");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].file_name().unwrap().to_str().unwrap(), snap);
    for id in [&fx.identity, &meta] {
        let plain = age_decrypt(id, &snaps[0]).unwrap();
        assert_eq!(&plain[..8], b"cairnS\x01\x00");
        let s = Snapshot::decode(&plain).unwrap();
        assert_eq!(s.paths, vec![s_(&src)]);
    }
    // Key objects open with the identity (they hold the meta identity, so not with it).
    let keys = fx.objects("keys");
    assert_eq!(keys.len(), 1);
    let plain = age_decrypt(&fx.identity, &keys[0]).unwrap();
    // Keys record version 2 (label, creation time, master identity); SPEC §5.
    assert_eq!(&plain[..8], b"cairnK\x02\x00");
    assert!(age_decrypt(&meta, &keys[0]).is_err());
    // config is plaintext.
    let cfg = fs::read(fx.repo.join("config")).unwrap();
    assert_eq!(&cfg[..8], b"cairnC\x01\x00");
}

fn s_(p: &Path) -> String {
    s(p).to_string()
}

#[test]
fn object_names_are_blake3_of_their_bytes() {
    let fx = Fixture::new();
    let src = fx.path("src");
    write_file(&src.join("x"), &random_bytes(13, 3_000_000));
    write_file(&src.join("y"), &text_bytes(14, 500_000));
    fx.backup(&[&src]);
    write_file(&src.join("z"), b"second backup");
    fx.backup(&[&src]);
    let mut checked = 0;
    for dir in ["data", "tree", "index", "snapshots", "keys"] {
        let objs = fx.objects(dir);
        assert!(!objs.is_empty(), "no objects under {dir}/");
        for p in objs {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let bytes = fs::read(&p).unwrap();
            assert_eq!(
                name,
                blake3::hash(&bytes).to_hex().as_str(),
                "{} is not named by its blake3",
                p.display()
            );
            assert!(
                bytes.starts_with(b"age-encryption.org/v1\n"),
                "{}",
                p.display()
            );
            if dir == "data" || dir == "tree" {
                // data/<first two hex digits>/<id>
                let parent = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
                assert_eq!(parent, &name[..2], "{}", p.display());
                assert_eq!(p.parent().unwrap().parent().unwrap(), fx.repo.join(dir));
            } else {
                assert_eq!(p.parent().unwrap(), fx.repo.join(dir));
            }
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} objects");
}

/// SPEC §11: recover a multi-chunk file with nothing but the age CLI and the format decoders.
#[test]
fn recover_a_file_with_age_and_the_spec_only() {
    let fx = Fixture::new();
    let src = fx.path("src");
    let mut content = random_bytes(15, 700_000);
    content.extend(text_bytes(16, 400_000));
    write_file(&src.join("etc/kubernetes/etcd.db"), &content);
    write_file(&src.join("etc/other"), b"other");
    fx.backup(&[&src]);

    // 1. snapshot → root tree id.
    let snaps = fx.objects("snapshots");
    let snap = Snapshot::decode(&age_decrypt(&fx.identity, &snaps[0]).unwrap()).unwrap();
    // 2. index objects → blob locations.
    let mut where_: HashMap<Id, (PackKind, Id, pack::BlobEntry)> = HashMap::new();
    for p in fx.objects("index") {
        let rec = IndexRecord::decode(&age_decrypt(&fx.identity, &p).unwrap()).unwrap();
        for pk in rec.packs {
            for b in pk.blobs {
                where_.insert(b.id, (pk.kind, pk.id, b));
            }
        }
    }
    let mut pack_cache: HashMap<Id, Vec<u8>> = HashMap::new();
    let mut blob = |id: &Id| -> Vec<u8> {
        let (kind, pack_id, entry) = where_.get(id).copied().expect("blob in index");
        let hex = pack_id.to_hex();
        let path = fx.repo.join(kind.dir()).join(&hex[..2]).join(&hex);
        let plain = pack_cache
            .entry(pack_id)
            .or_insert_with(|| age_decrypt(&fx.identity, &path).unwrap());
        pack::read_blob(plain, &entry).unwrap()
    };
    // 3. descend by name.
    let mut tree = Tree::decode(&blob(&snap.tree)).unwrap();
    let want = src.join("etc/kubernetes/etcd.db");
    let comps: Vec<_> = want.iter().skip(1).collect();
    let mut node = None;
    for (i, c) in comps.iter().enumerate() {
        let n = tree
            .get(c.as_encoded_bytes())
            .unwrap_or_else(|| panic!("{c:?} not found"))
            .clone();
        if i + 1 < comps.len() {
            assert_eq!(n.kind, NodeKind::Dir);
            tree = Tree::decode(&blob(&n.subtree.unwrap())).unwrap();
        } else {
            node = Some(n);
        }
    }
    let node = node.unwrap();
    assert_eq!(node.kind, NodeKind::File);
    assert!(
        node.content.len() > 1,
        "expected several chunks, got {}",
        node.content.len()
    );
    // 4. concatenate the content blobs.
    let mut out = Vec::new();
    for id in &node.content {
        out.extend(blob(id));
    }
    assert_eq!(out.len() as u64, node.size);
    assert!(out == content, "recovered bytes differ from the original");
}
