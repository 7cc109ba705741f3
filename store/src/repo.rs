//! Opening, creating and holding a repository, with its key role.

use crate::backend::{Backend, CachedBackend, ReadSeek};
use crate::{Error, Result};
use cairn_format::chunker::{ChunkPolicy, ChunkerParams};
use cairn_format::config::RepoConfig;
use cairn_format::envelope::{self, EnvelopeError, SeekableReader};
use cairn_format::index::IndexRecord;
use cairn_format::keys::{KeyInfo, KeyRecord};
use cairn_format::pack::PackKind;
use cairn_format::payload::Payload;
use cairn_format::{ChunkIdKey, Id};
use rand::RngCore;
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// scrypt work factor for passphrase-protected keys (age's default strength).
pub(crate) const SCRYPT_LOG_N: u8 = 18;
/// Largest scrypt work factor accepted when opening: what cairn writes. Anyone can plant key
/// objects; one at 2^22 would cost every passphrase open 4 GiB and seconds of work, so a
/// higher one is skipped, named, without any work.
pub(crate) const SCRYPT_MAX_LOG_N: u8 = SCRYPT_LOG_N;
/// Largest key object plaintext accepted.
pub(crate) const MAX_KEYS_LEN: u64 = 1 << 20;

/// How the user proves who they are.
pub enum Credentials {
    /// age identities (from an identity file): full access if they open a key object.
    Identities(Vec<Box<dyn age::Identity + Send + Sync>>),
    /// A passphrase that opens a passphrase key object: full access.
    Passphrase(String),
    /// A write key: back up and read metadata, never file content.
    WriteKey(KeyRecord),
}

/// What the opened repository may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Identity holder: everything.
    Full,
    /// Write key holder: no file content.
    WriteOnly,
}

/// Parameters for `init`.
pub struct InitOptions {
    /// X25519 recipients (`age1…`) that will be able to read everything.
    pub recipients: Vec<String>,
    /// A passphrase that will also open the repository.
    pub passphrase: Option<String>,
    /// FastCDC sizes.
    pub chunker: ChunkerParams,
    /// Pack target size.
    pub pack_size: u32,
    /// zstd level.
    pub zstd_level: i32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            recipients: Vec::new(),
            passphrase: None,
            chunker: ChunkerParams::default(),
            pack_size: RepoConfig::DEFAULT_PACK_SIZE,
            zstd_level: 3,
        }
    }
}

/// An open repository.
pub struct Repository {
    backend: Box<dyn Backend>,
    config: RepoConfig,
    keys: KeyRecord,
    meta_identity: age::x25519::Identity,
    data_identities: Option<Vec<Box<dyn age::Identity + Send + Sync>>>,
    master_recipients: Vec<age::x25519::Recipient>,
    meta_recipients: Vec<age::x25519::Recipient>,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// Store an encrypted key object under its content address.
pub(crate) fn put_key_object(backend: &dyn Backend, ct: &[u8]) -> Result<String> {
    let id = Id::of_object(ct).to_hex();
    backend.put(&format!("keys/{id}"), ct)?;
    Ok(id)
}

impl Repository {
    /// Create a new repository in `backend`.
    pub fn init(backend: Box<dyn Backend>, opts: InitOptions) -> Result<Repository> {
        opts.chunker.validate()?;
        if opts.recipients.is_empty() && opts.passphrase.is_none() {
            return Err(Error::Invalid(
                "init needs at least one recipient (--recipient/--recipients-file) or a passphrase (--passphrase-file)".into(),
            ));
        }
        if opts.recipients.len() > envelope::MAX_RECIPIENTS {
            return Err(Error::Invalid(format!(
                "{} recipients given; a repository takes at most {} (readers refuse objects \
                 with more, as no cairn writes them)",
                opts.recipients.len(),
                envelope::MAX_RECIPIENTS
            )));
        }
        if backend.exists("config")? {
            return Err(Error::AlreadyInitialized {
                location: backend.location(),
            });
        }
        let mut master_recipients = Vec::new();
        for r in &opts.recipients {
            master_recipients.push(envelope::parse_recipient(r)?);
        }
        // The master identity: every key object holds it, so a key added later (`key add`)
        // can read everything written before. The recipients given are master recipients too,
        // so their identities decrypt objects directly (SPEC §12).
        let master = age::x25519::Identity::generate();
        master_recipients.push(master.to_public());
        let meta = age::x25519::Identity::generate();
        let config = RepoConfig {
            repo_id: Id(random_bytes()),
            created_unix: chrono::Utc::now().timestamp(),
            chunker: opts.chunker,
            pack_size: opts.pack_size,
            zstd_level: opts.zstd_level,
        };
        let keys = KeyRecord {
            repo_id: config.repo_id,
            chunk_key: random_bytes(),
            chunker_seed: u64::from_le_bytes(random_bytes()),
            meta_identity: envelope::identity_to_string(&meta),
            master_recipients: master_recipients.iter().map(|r| r.to_string()).collect(),
            master_identity: Some(envelope::identity_to_string(&master)),
            info: Some(KeyInfo {
                label: None,
                created_unix: config.created_unix,
            }),
        };
        // Keys first, config last: a repository without config is not a repository, so an
        // interrupted init can simply be run again.
        if !opts.recipients.is_empty() {
            let user = &master_recipients[..opts.recipients.len()];
            put_key_object(backend.as_ref(), &envelope::encrypt(&keys.encode(), user))?;
        }
        if let Some(pass) = &opts.passphrase {
            let ct = envelope::encrypt_with_passphrase(&keys.encode(), pass, SCRYPT_LOG_N);
            put_key_object(backend.as_ref(), &ct)?;
        }
        if !backend.put_new("config", &config.encode())? {
            return Err(Error::AlreadyInitialized {
                location: backend.location(),
            });
        }
        Self::assemble(
            backend,
            config,
            keys,
            Credentials::Identities(vec![Box::new(master)]),
        )
    }

    /// Create a repository in `backend` that shares this one's keys, chunker parameters and
    /// repository id, so `copy` can move packs between them as ciphertext. Key objects and
    /// config are copied as stored (no decryption), so any role may do it.
    pub fn init_like(&self, backend: &dyn Backend) -> Result<()> {
        if backend.exists("config")? {
            return Err(Error::AlreadyInitialized {
                location: backend.location(),
            });
        }
        for obj in self.backend.list("keys")? {
            backend.put(&obj.path, &self.backend.get(&obj.path)?)?;
        }
        if !backend.put_new("config", &self.backend.get("config")?)? {
            return Err(Error::AlreadyInitialized {
                location: backend.location(),
            });
        }
        Ok(())
    }

    /// Open the repository in `backend` with `creds`.
    pub fn open(backend: Box<dyn Backend>, creds: Credentials) -> Result<Repository> {
        Self::open_cached(backend, creds, None)
    }

    /// [`Repository::open`], keeping metadata of a remote repository in a local cache below
    /// `cache_root` (one directory per repository id; see [`CachedBackend`]). Local
    /// repositories are never cached.
    pub fn open_cached(
        backend: Box<dyn Backend>,
        creds: Credentials,
        cache_root: Option<&Path>,
    ) -> Result<Repository> {
        let config_bytes = match backend.get("config") {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => {
                return Err(Error::NotARepository {
                    location: backend.location(),
                })
            }
            Err(e) => return Err(e),
        };
        let config = RepoConfig::decode(&config_bytes).map_err(|e| match e {
            e @ cairn_format::Error::UnsupportedVersion { .. } => Error::Format(e),
            e => Error::damaged("config", e),
        })?;
        // An Object Lock policy: everything written from now on is locked.
        crate::object_lock::apply(backend.as_ref())?;
        let backend: Box<dyn Backend> = match cache_root {
            Some(root) if backend.is_remote() => Box::new(CachedBackend::new(
                backend,
                root.join(config.repo_id.to_hex()),
            )),
            _ => backend,
        };
        let (keys, creds) = match creds {
            Credentials::WriteKey(k) => {
                if k.repo_id != config.repo_id {
                    return Err(Error::KeyMismatch {
                        what: "the write key".into(),
                        key_repo: k.repo_id,
                        repo: config.repo_id,
                    });
                }
                (k.clone(), Credentials::WriteKey(k))
            }
            Credentials::Identities(ids) => {
                let keys = Self::find_key(backend.as_ref(), &config, |ct| {
                    let refs: Vec<&dyn age::Identity> = ids
                        .iter()
                        .map(|i| i.as_ref() as &dyn age::Identity)
                        .collect();
                    envelope::decrypt(ct, &refs, MAX_KEYS_LEN)
                })
                .map_err(|tried| match tried {
                    Ok((tried, damaged)) => Error::WrongIdentity { tried, damaged },
                    Err(e) => e,
                })?;
                let mut ids = ids;
                if let Some(master) = &keys.master_identity {
                    ids.push(Box::new(envelope::parse_identity(master)?));
                }
                (keys, Credentials::Identities(ids))
            }
            Credentials::Passphrase(pass) => {
                // Key objects for identities are tried too (their header says nothing the
                // passphrase needs); only passphrase keys count in the error.
                let passphrase_keys = std::cell::Cell::new(0);
                let keys = Self::find_key(backend.as_ref(), &config, |ct| {
                    if envelope::is_passphrase_file(ct) {
                        passphrase_keys.set(passphrase_keys.get() + 1);
                    }
                    envelope::decrypt_with_passphrase(ct, &pass, SCRYPT_MAX_LOG_N, MAX_KEYS_LEN)
                })
                .map_err(|tried| match tried {
                    Ok((_, damaged)) => Error::WrongPassphrase {
                        tried: passphrase_keys.get(),
                        damaged,
                    },
                    Err(e) => e,
                })?;
                let master = keys.master_identity.as_deref().ok_or_else(|| {
                    Error::Invalid("passphrase key holds no master identity".into())
                })?;
                let master = envelope::parse_identity(master)?;
                (keys, Credentials::Identities(vec![Box::new(master)]))
            }
        };
        Self::assemble(backend, config, keys, creds)
    }

    /// Try every key object with `decrypt`. `Err(Ok((n, damaged)))`: none of `n` opened, and
    /// these did not match their names. Key objects that open but disagree are an error
    /// (possible tampering).
    #[allow(clippy::type_complexity)]
    fn find_key(
        backend: &dyn Backend,
        config: &RepoConfig,
        decrypt: impl Fn(&[u8]) -> Result<Vec<u8>, EnvelopeError>,
    ) -> Result<KeyRecord, Result<(usize, Vec<String>), Error>> {
        let objects = backend.list("keys").map_err(Err)?;
        let mut tried = 0;
        let mut damaged = Vec::new();
        let mut found: Option<(String, KeyRecord)> = None;
        for obj in &objects {
            let ct = backend.get(&obj.path).map_err(Err)?;
            tried += 1;
            let name = obj.path.rsplit('/').next().unwrap_or_default();
            if name.parse::<Id>().ok() != Some(Id::of_object(&ct)) {
                damaged.push(obj.path.clone());
                continue;
            }
            match decrypt(&ct) {
                Ok(plain) => {
                    let keys = KeyRecord::decode(&plain)
                        .map_err(|e| Err(Error::damaged(obj.path.clone(), e)))?;
                    if keys.repo_id != config.repo_id {
                        return Err(Err(Error::KeyMismatch {
                            what: format!("key object {}", obj.path),
                            key_repo: keys.repo_id,
                            repo: config.repo_id,
                        }));
                    }
                    // Anyone who can write to the repository can add a key object encrypted
                    // to the master recipients. Every key object the credentials open must
                    // therefore say the same thing, master identity aside.
                    // Key objects made before the master identity was in every one (keys
                    // record version 1) may lack it; prefer one that holds it.
                    match &found {
                        Some((first, k)) if k.to_write_key() != keys.to_write_key() => {
                            return Err(Err(Error::ConflictingKeys {
                                first: first.clone(),
                                second: obj.path.clone(),
                            }));
                        }
                        Some((_, k))
                            if k.master_identity.is_some() || keys.master_identity.is_none() => {}
                        _ => found = Some((obj.path.clone(), keys)),
                    }
                }
                Err(EnvelopeError::NoMatchingKey | EnvelopeError::WrongPassphrase) => {}
                Err(EnvelopeError::NotAge) => {}
                Err(e @ EnvelopeError::ExcessiveWork { .. }) => {
                    tracing::warn!(
                        "key object {} skipped: {e}; cairn never writes such keys (planted, or \
                         made by another tool)",
                        obj.path
                    );
                }
                Err(e) => {
                    tracing::warn!("key object {} could not be read: {e}", obj.path);
                }
            }
        }
        found.map(|(_, k)| k).ok_or(Ok((tried, damaged)))
    }

    fn assemble(
        backend: Box<dyn Backend>,
        config: RepoConfig,
        keys: KeyRecord,
        creds: Credentials,
    ) -> Result<Repository> {
        let meta_identity = envelope::parse_identity(&keys.meta_identity)?;
        let master_recipients = keys
            .master_recipients
            .iter()
            .map(|r| envelope::parse_recipient(r))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut meta_recipients = vec![meta_identity.to_public()];
        meta_recipients.extend(master_recipients.iter().cloned());
        let data_identities = match creds {
            Credentials::Identities(ids) => Some(ids),
            _ => None,
        };
        Ok(Repository {
            backend,
            config,
            keys,
            meta_identity,
            data_identities,
            master_recipients,
            meta_recipients,
        })
    }

    /// The storage.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Repository parameters.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The role the credentials grant.
    pub fn role(&self) -> Role {
        if self.data_identities.is_some() {
            Role::Full
        } else {
            Role::WriteOnly
        }
    }

    /// The blob id key.
    pub fn chunk_id_key(&self) -> ChunkIdKey {
        self.keys.chunk_id_key()
    }

    /// Chunking policy for general files.
    pub fn cdc_policy(&self) -> ChunkPolicy {
        ChunkPolicy::Cdc {
            params: self.config.chunker,
            seed: self.keys.chunker_seed,
        }
    }

    /// The master recipients: every data pack is encrypted to these.
    pub fn master_recipients(&self) -> &[String] {
        &self.keys.master_recipients
    }

    /// The recipient of the master identity cairn generated at `init` (one of
    /// [`Repository::master_recipients`]), when the credentials opened it.
    pub fn own_recipient(&self) -> Option<String> {
        let id = envelope::parse_identity(self.keys.master_identity.as_deref()?).ok()?;
        Some(id.to_public().to_string())
    }

    /// The repository secrets the credentials opened (for a write key: the write key).
    pub(crate) fn keys(&self) -> &KeyRecord {
        &self.keys
    }

    /// The write key file text for this repository.
    pub fn write_key_text(&self, label: Option<&str>) -> String {
        cairn_format::keys::write_key_to_text(&self.keys, label)
    }

    /// Recipients of packs of `kind`: data packs go to the master recipients only.
    pub fn pack_recipients(&self, kind: PackKind) -> &[age::x25519::Recipient] {
        match kind {
            PackKind::Data => &self.master_recipients,
            PackKind::Tree => &self.meta_recipients,
        }
    }

    /// Path of a pack object.
    pub fn pack_path(kind: PackKind, id: &Id) -> String {
        let hex = id.to_hex();
        format!("{}/{}/{}", kind.dir(), &hex[..2], hex)
    }

    /// The id an object's path names (its last component), if that is an id: an object
    /// named otherwise was not written there by cairn.
    pub fn id_of_path(path: &str) -> Option<Id> {
        path.rsplit('/').next()?.parse().ok()
    }

    /// Encrypt `plaintext` to the metadata recipients and store it as `dir/<id>`.
    pub fn put_meta(&self, dir: &str, plaintext: &[u8]) -> Result<Id> {
        self.put_sealed(dir, envelope::encrypt(plaintext, &self.meta_recipients))
    }

    /// Store an index object: encrypted as it is encoded, so that its plaintext (up to a few
    /// MB) is never held beside its ciphertext.
    pub fn put_index(&self, record: &IndexRecord) -> Result<Id> {
        let ct = envelope::encrypt_with(record.encoded_len(), &self.meta_recipients, |w| {
            // The encryptor copies each write into its segment: fields go in a few KiB at once.
            let buffered = record.encode_to(std::io::BufWriter::with_capacity(8192, w))?;
            buffered.into_inner().map(drop).map_err(|e| e.into_error())
        })
        .map_err(|e| Error::Invalid(format!("encrypting an index object: {e}")))?;
        self.put_sealed("index", ct)
    }

    /// Store the age file `ct` as `dir/<its id>`.
    fn put_sealed(&self, dir: &str, ct: Vec<u8>) -> Result<Id> {
        let id = Id::of_object(&ct);
        self.backend.put(&format!("{dir}/{id}"), &ct)?;
        Ok(id)
    }

    /// Encrypt `plaintext` to the metadata recipients and store it at `path`, a name that is
    /// not content-addressed, replacing what is there (the prune lease).
    pub fn put_meta_at(&self, path: &str, plaintext: &[u8]) -> Result<()> {
        self.backend
            .replace(path, &envelope::encrypt(plaintext, &self.meta_recipients))
    }

    /// Like [`Repository::put_meta_at`], only if nothing is stored at `path` yet.
    pub fn put_meta_new(&self, path: &str, plaintext: &[u8]) -> Result<bool> {
        self.backend
            .put_new(path, &envelope::encrypt(plaintext, &self.meta_recipients))
    }

    /// Read and decrypt a metadata object stored at `path` without a content-addressed name.
    pub fn get_meta_at(&self, path: &str, max_len: u64) -> Result<Vec<u8>> {
        let ct = self.backend.get(path)?;
        envelope::decrypt(&ct, &[&self.meta_identity], max_len).map_err(|e| Error::damaged(path, e))
    }

    /// Read `dir/<id>`, check its name, decrypt with the metadata identity.
    pub fn get_meta(&self, dir: &str, id: &Id, max_len: u64) -> Result<Vec<u8>> {
        let path = format!("{dir}/{id}");
        let ct = self.backend.get(&path)?;
        let actual = Id::of_object(&ct);
        if actual != *id {
            return Err(Error::NameMismatch {
                object: path,
                actual,
            });
        }
        envelope::decrypt(&ct, &[&self.meta_identity], max_len).map_err(|e| Error::damaged(path, e))
    }

    /// Open a pack for random access, with the identity its kind needs.
    pub fn open_pack(&self, kind: PackKind, id: &Id) -> Result<SeekableReader<Box<dyn ReadSeek>>> {
        let reader = self.backend.open(&Self::pack_path(kind, id))?;
        self.decrypt_pack(kind, id, reader)
    }

    /// The stored object of a pack, for [`Repository::decrypt_pack`].
    pub fn pack_object(&self, kind: PackKind, id: &Id) -> Result<Box<dyn ReadSeek>> {
        self.backend.open(&Self::pack_path(kind, id))
    }

    /// Random access to the plaintext of the pack `reader` reads.
    pub fn decrypt_pack<R: std::io::Read + std::io::Seek>(
        &self,
        kind: PackKind,
        id: &Id,
        reader: R,
    ) -> Result<SeekableReader<R>> {
        let ids = self.pack_identities(kind)?;
        SeekableReader::open(reader, &ids).map_err(|e| Self::pack_error(kind, id, e))
    }

    /// The stored object of a pack, positioned at its start, and its payload (header read).
    pub fn open_pack_payload(
        &self,
        kind: PackKind,
        id: &Id,
    ) -> Result<(Box<dyn ReadSeek>, Payload)> {
        let mut object = self.pack_object(kind, id)?;
        let io = |e| Error::damaged(Self::pack_path(kind, id), EnvelopeError::Io(e));
        let len = object.seek(SeekFrom::End(0)).map_err(io)?;
        object.seek(SeekFrom::Start(0)).map_err(io)?;
        let payload = self.pack_payload(kind, id, &mut object, len)?;
        Ok((object, payload))
    }

    /// The payload of the pack `object` reads (positioned at its start; `len` bytes long),
    /// for decryption in the reader's own buffers ([`Payload::decrypt_in_place`]).
    pub fn pack_payload<R: std::io::Read>(
        &self,
        kind: PackKind,
        id: &Id,
        object: &mut R,
        len: u64,
    ) -> Result<Payload> {
        let ids = self.pack_identities(kind)?;
        Payload::open(object, len, &ids).map_err(|e| Self::pack_error(kind, id, e))
    }

    /// The identities that open packs of `kind`.
    pub(crate) fn pack_identities(&self, kind: PackKind) -> Result<Vec<&dyn age::Identity>> {
        match kind {
            PackKind::Tree => Ok(vec![&self.meta_identity as &dyn age::Identity]),
            PackKind::Data => self.data_identities().ok_or(Error::NeedsIdentity {
                what: "reading file contents",
            }),
        }
    }

    /// Why pack `id` could not be opened.
    fn pack_error(kind: PackKind, id: &Id, e: EnvelopeError) -> Error {
        let path = Self::pack_path(kind, id);
        match e {
            EnvelopeError::NoMatchingKey => Error::Invalid(format!(
                "pack {path} is not encrypted to the given identity; is it the identity this repository was created for?"
            )),
            e => Error::damaged(path, e),
        }
    }

    /// Identities able to decrypt data packs, if the role allows.
    pub fn data_identities(&self) -> Option<Vec<&dyn age::Identity>> {
        self.data_identities.as_ref().map(|ids| {
            ids.iter()
                .map(|i| i.as_ref() as &dyn age::Identity)
                .collect()
        })
    }

    /// The metadata identity.
    pub fn meta_identity(&self) -> &age::x25519::Identity {
        &self.meta_identity
    }
}
