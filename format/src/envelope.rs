//! age envelopes: every stored object except `config` is a standard age file.
//!
//! Encryption is to X25519 recipients (or, for key objects only, a passphrase). Decryption of
//! small objects is in memory with a size bound; packs are read through age's seekable STREAM
//! so one blob costs one 64 KiB segment, not the whole pack; restores decrypt runs of segments
//! in their own buffers ([`crate::payload`]).

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;
use std::io::{self, Read, Seek, Write};
use std::str::FromStr;
use thiserror::Error;

/// Why an envelope could not be opened.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// The bytes are not an age file.
    #[error("not an age-encrypted object (header unreadable)")]
    NotAge,
    /// None of the given identities is a recipient of the object.
    #[error("the object is not encrypted to any of the given identities")]
    NoMatchingKey,
    /// A passphrase-encrypted object could not be opened with the passphrase.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// Authentication failed: the ciphertext was modified or truncated.
    #[error("the ciphertext is damaged or truncated (authentication failed)")]
    Damaged,
    /// A passphrase object asks for more scrypt work than the caller allows (2^`required`).
    #[error("its passphrase needs scrypt work factor 2^{required}, over the 2^{allowed} allowed")]
    ExcessiveWork {
        /// The object's work factor.
        required: u8,
        /// The largest the caller allows.
        allowed: u8,
    },
    /// The age header is larger than any cairn writes (refused before age parses it).
    #[error(
        "its age header is larger than cairn writes (over {MAX_STANZAS} recipient stanzas or \
         {MAX_HEADER_LEN} bytes): it was not written by cairn"
    )]
    HeaderTooLarge,
    /// The plaintext is larger than the caller allows.
    #[error("plaintext exceeds the {0} bytes allowed for this object")]
    TooLarge(u64),
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl From<age::DecryptError> for EnvelopeError {
    fn from(e: age::DecryptError) -> Self {
        use age::DecryptError as D;
        match e {
            D::NoMatchingKeys => EnvelopeError::NoMatchingKey,
            D::KeyDecryptionFailed => EnvelopeError::WrongPassphrase,
            D::InvalidHeader | D::UnknownFormat => EnvelopeError::NotAge,
            D::Io(io) => io_error(io),
            D::ExcessiveWork { required, target } => EnvelopeError::ExcessiveWork {
                required,
                allowed: target,
            },
            _ => EnvelopeError::Damaged,
        }
    }
}

/// age reports payload authentication failures as `InvalidData` I/O errors.
fn io_error(e: io::Error) -> EnvelopeError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => EnvelopeError::Damaged,
        _ => EnvelopeError::Io(e),
    }
}

/// Parse an X25519 recipient (`age1…`). The error repeats what was given, unless it is a
/// secret (an identity or a write key put where a recipient belongs).
pub fn parse_recipient(s: &str) -> Result<x25519::Recipient, crate::Error> {
    let s = s.trim();
    x25519::Recipient::from_str(s).map_err(|e| {
        crate::Error::Key(match secret_kind(s) {
            Some(kind) => format!("a recipient was expected, but this is {kind} (not shown)"),
            // Its start is enough to find it, and never a whole secret in some unknown form.
            None => format!("recipient {:?}: {e}", shown_start(s)),
        })
    })
}

/// The first 16 characters of `s`, with `…` when there are more.
fn shown_start(s: &str) -> String {
    match s.char_indices().nth(16) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// What secret `s` is, if it looks like one: an age identity (X25519 or plugin) or a cairn
/// write key. Messages name the kind and never repeat the text.
pub fn secret_kind(s: &str) -> Option<&'static str> {
    // Anywhere in the text: quoted, after a BOM or a `key=`.
    let upper = s.to_ascii_uppercase();
    if upper.contains("AGE-SECRET-KEY-") || upper.contains("AGE-PLUGIN-") {
        Some("an age identity (a secret key)")
    } else if upper.contains("CAIRN-WRITE-KEY") {
        Some("a cairn write key (a secret)")
    } else {
        None
    }
}

/// Parse an X25519 identity (`AGE-SECRET-KEY-1…`). The error never contains the secret.
pub fn parse_identity(s: &str) -> Result<x25519::Identity, crate::Error> {
    x25519::Identity::from_str(s.trim())
        .map_err(|e| crate::Error::Key(format!("identity is not a valid age X25519 key: {e}")))
}

/// The text form of an identity. Handle with care: it is the secret.
pub fn identity_to_string(id: &x25519::Identity) -> String {
    id.to_string().expose_secret().to_string()
}

/// Encrypt `plaintext` to `recipients` as one age file.
pub fn encrypt(plaintext: &[u8], recipients: &[x25519::Recipient]) -> Vec<u8> {
    encrypt_with(plaintext.len(), recipients, |w| w.write_all(plaintext))
        .expect("encrypting into a Vec")
}

/// One age file to `recipients` of the `len` plaintext bytes that `write` writes, encrypted
/// as they are written: the plaintext is never held whole, and the file's buffer is sized
/// once (`len` is exact or an estimate; a longer plaintext only costs a regrowth).
pub fn encrypt_with(
    len: usize,
    recipients: &[x25519::Recipient],
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<Vec<u8>> {
    let out = Vec::with_capacity(encrypted_len(len, recipients.len()));
    let mut w = encrypting_writer(recipients, out)?;
    write(&mut w)?;
    w.finish()
}

/// An upper bound of the length of an age file of `len` plaintext bytes to `recipients`
/// X25519 recipients: the header (version line, MAC and nonce under 100 bytes, the random
/// "grease" stanza age adds under 200, an X25519 stanza under 128) and a 16-byte tag per
/// 64 KiB segment.
fn encrypted_len(len: usize, recipients: usize) -> usize {
    512 + 128 * recipients + len + (len / (64 << 10) + 1) * 16
}

/// An age file to `recipients` being written to `out`: plaintext written to it is encrypted
/// 64 KiB segment by segment; `finish` writes the last segment and returns `out`.
pub fn encrypting_writer<W: Write>(
    recipients: &[x25519::Recipient],
    out: W,
) -> io::Result<age::stream::StreamWriter<W>> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| io::Error::other(e.to_string()))?;
    encryptor.wrap_output(out)
}

/// Whether the age file `ct` is encrypted to a passphrase: its header (text up to the MAC
/// line) holds an scrypt stanza. Only the header's first 4 KiB are looked at.
pub fn is_passphrase_file(ct: &[u8]) -> bool {
    let head = &ct[..ct.len().min(4096)];
    let header = head
        .windows(4)
        .position(|w| w == b"\n---")
        .map_or(head, |end| &head[..end]);
    header.windows(10).any(|w| w == b"\n-> scrypt")
}

/// Encrypt with a passphrase (scrypt, work factor `log_n`). Used for key objects only.
pub fn encrypt_with_passphrase(plaintext: &[u8], passphrase: &str, log_n: u8) -> Vec<u8> {
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.to_owned()));
    recipient.set_work_factor(log_n);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .expect("one scrypt recipient");
    let mut out = Vec::new();
    let mut w = encryptor.wrap_output(&mut out).expect("writing to a Vec");
    w.write_all(plaintext).expect("writing to a Vec");
    w.finish().expect("writing to a Vec");
    out
}

/// Most recipients a repository takes at `init`: its objects carry one stanza for each, plus
/// two (the repository's own master and metadata keys) and age's random "grease" stanza, at
/// most [`MAX_STANZAS`].
pub const MAX_RECIPIENTS: usize = MAX_STANZAS - 3;

/// Most recipient stanzas in the header of an object cairn reads.
pub const MAX_STANZAS: usize = 64;

/// Longest age header cairn reads (64 X25519 stanzas take about 7 KiB).
pub const MAX_HEADER_LEN: usize = 16 << 10;

/// Refuse an age header that cairn never writes, before age parses it: age re-parses a header
/// as it grows, in time quadratic in its length, so a planted object with thousands of
/// stanzas would hold every reader for minutes. `bytes` is the object's start (or all of it).
pub fn check_header(bytes: &[u8]) -> Result<(), EnvelopeError> {
    let window = &bytes[..bytes.len().min(MAX_HEADER_LEN)];
    let header = match window.windows(4).position(|w| w == b"\n---") {
        Some(end) => &window[..end],
        // No end within the window: too long, or truncated (age says so).
        None if bytes.len() > MAX_HEADER_LEN => return Err(EnvelopeError::HeaderTooLarge),
        None => window,
    };
    if stanza_count(header) > MAX_STANZAS {
        return Err(EnvelopeError::HeaderTooLarge);
    }
    Ok(())
}

/// Recipient stanzas (`-> ` lines) in header text.
pub fn stanza_count(header: &[u8]) -> usize {
    header.windows(4).filter(|w| w == b"\n-> ").count()
}

/// True when the object is encrypted to a passphrase rather than to recipients.
pub fn is_passphrase_encrypted(ciphertext: &[u8]) -> Result<bool, EnvelopeError> {
    check_header(ciphertext)?;
    Ok(age::Decryptor::new_buffered(ciphertext)?.is_scrypt())
}

/// Decrypt an in-memory object with identities, refusing plaintexts over `max_len`.
pub fn decrypt(
    ciphertext: &[u8],
    identities: &[&dyn age::Identity],
    max_len: u64,
) -> Result<Vec<u8>, EnvelopeError> {
    check_header(ciphertext)?;
    let reader = age::Decryptor::new_buffered(ciphertext)?.decrypt(identities.iter().copied())?;
    read_bounded(reader, max_len)
}

/// Decrypt an in-memory object with a passphrase (work factor at most `max_log_n`).
pub fn decrypt_with_passphrase(
    ciphertext: &[u8],
    passphrase: &str,
    max_log_n: u8,
    max_len: u64,
) -> Result<Vec<u8>, EnvelopeError> {
    check_header(ciphertext)?;
    let mut identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_owned()));
    identity.set_max_work_factor(max_log_n);
    let reader = age::Decryptor::new_buffered(ciphertext)?
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys
            | age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed => EnvelopeError::WrongPassphrase,
            other => other.into(),
        })?;
    read_bounded(reader, max_len)
}

fn read_bounded<R: Read>(reader: R, max_len: u64) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    reader
        .take(max_len + 1)
        .read_to_end(&mut out)
        .map_err(io_error)?;
    if out.len() as u64 > max_len {
        return Err(EnvelopeError::TooLarge(max_len));
    }
    Ok(out)
}

/// A seekable plaintext view of a stored age file (`R` reads the ciphertext).
pub struct SeekableReader<R: Read + Seek> {
    inner: age::stream::StreamReader<R>,
    len: Option<u64>,
}

impl<R: Read + Seek> SeekableReader<R> {
    /// Open an age file for random access with `identities`.
    pub fn open(
        mut ciphertext: R,
        identities: &[&dyn age::Identity],
    ) -> Result<Self, EnvelopeError> {
        let mut start = Vec::with_capacity(MAX_HEADER_LEN + 1);
        (&mut ciphertext)
            .take(MAX_HEADER_LEN as u64 + 1)
            .read_to_end(&mut start)
            .map_err(io_error)?;
        check_header(&start)?;
        ciphertext.seek(io::SeekFrom::Start(0)).map_err(io_error)?;
        let inner = age::Decryptor::new(ciphertext)?.decrypt(identities.iter().copied())?;
        Ok(SeekableReader { inner, len: None })
    }

    /// Plaintext length (found by seeking to the end, which authenticates the last segment).
    pub fn plaintext_len(&mut self) -> Result<u64, EnvelopeError> {
        if let Some(len) = self.len {
            return Ok(len);
        }
        let len = self.inner.seek(io::SeekFrom::End(0)).map_err(io_error)?;
        self.len = Some(len);
        Ok(len)
    }

    /// Read exactly `len` plaintext bytes at `offset`. A range past the end is an error
    /// (checked here: age 0.12 panics when asked to read past the end of a short last chunk).
    pub fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, EnvelopeError> {
        let total = self.plaintext_len()?;
        if offset.checked_add(len as u64).is_none_or(|end| end > total) {
            return Err(EnvelopeError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("range {offset}+{len} lies beyond the {total}-byte plaintext"),
            )));
        }
        self.inner
            .seek(io::SeekFrom::Start(offset))
            .map_err(io_error)?;
        let mut buf = vec![0u8; len];
        self.inner.read_exact(&mut buf).map_err(io_error)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_no_cairn_writes_are_refused_before_age_parses_them() {
        let ids: Vec<x25519::Identity> = (0..MAX_STANZAS + 1)
            .map(|_| x25519::Identity::generate())
            .collect();
        let to = |n: usize| -> Vec<x25519::Recipient> {
            ids[..n].iter().map(|i| i.to_public()).collect()
        };
        let me: &dyn age::Identity = &ids[0];
        // The most cairn writes opens, as an object and as a seekable payload (age adds a
        // grease stanza to the recipients').
        let most = encrypt(b"plain", &to(MAX_STANZAS - 1));
        assert!(most.len() < MAX_HEADER_LEN + 100);
        assert_eq!(decrypt(&most, &[me], 100).unwrap(), b"plain");
        assert!(SeekableReader::open(io::Cursor::new(&most), &[me]).is_ok());
        // One stanza more is refused, quickly, on every path.
        let over = encrypt(b"plain", &to(MAX_STANZAS));
        assert!(matches!(
            decrypt(&over, &[me], 100),
            Err(EnvelopeError::HeaderTooLarge)
        ));
        assert!(matches!(
            SeekableReader::open(io::Cursor::new(&over), &[me]),
            Err(EnvelopeError::HeaderTooLarge)
        ));
        assert!(matches!(
            crate::payload::Payload::open(&mut io::Cursor::new(&over), over.len() as u64, &[me]),
            Err(EnvelopeError::HeaderTooLarge)
        ));
        // A header of 40,000 planted stanzas (about 4 MB) is refused without parsing it.
        let stanza = b"-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
        let mut planted = b"age-encryption.org/v1\n".to_vec();
        for _ in 0..40_000 {
            planted.extend_from_slice(stanza);
        }
        planted.extend_from_slice(b"--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
        let t = std::time::Instant::now();
        assert!(matches!(
            decrypt(&planted, &[me], 100),
            Err(EnvelopeError::HeaderTooLarge)
        ));
        assert!(matches!(
            crate::payload::Payload::open(
                &mut io::Cursor::new(&planted),
                planted.len() as u64,
                &[me]
            ),
            Err(EnvelopeError::HeaderTooLarge)
        ));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn passphrase_files_are_told_from_others_by_their_header() {
        let id = x25519::Identity::generate();
        assert!(!is_passphrase_file(&encrypt(b"k", &[id.to_public()])));
        assert!(is_passphrase_file(&encrypt_with_passphrase(b"k", "pw", 2)));
        assert!(!is_passphrase_file(b""));
    }

    #[test]
    fn a_secret_given_as_recipient_is_not_repeated() {
        let id = identity_to_string(&x25519::Identity::generate());
        let error = |s: &str| parse_recipient(s).unwrap_err().to_string();
        for given in [format!("  {id}\n"), format!("\"{id}\"")] {
            let e = error(&given);
            assert!(e.contains("age identity") && !e.contains(&id[15..]), "{e}");
        }
        let e = error("CAIRN-WRITE-KEY-1:Y2Fpcm5L");
        assert!(e.contains("write key") && !e.contains("Y2Fpcm5L"), "{e}");
        let e = error("age1typo");
        assert!(e.contains("\"age1typo\""), "{e}");
        let e = error("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq");
        assert!(e.contains("age1qqqqqqqqqqqq…"), "{e}");
    }

    #[test]
    fn round_trips_and_precise_errors() {
        let id = x25519::Identity::generate();
        let other = x25519::Identity::generate();
        let data = vec![42u8; 200_000];
        let ct = encrypt(&data, &[id.to_public()]);
        assert_eq!(decrypt(&ct, &[&id], 1 << 20).unwrap(), data);
        // The buffer is sized once: the file fits the bound, for several recipients too, with
        // age's random grease stanza (many files, so that its longest forms occur).
        let many: Vec<_> = (0..5)
            .map(|_| x25519::Identity::generate().to_public())
            .collect();
        let cases = [(0, &many[..1]), (200_000, &many[..]), (3 << 20, &many[..2])];
        for (len, to) in cases
            .into_iter()
            .chain(std::iter::repeat_n((10, &many[..1]), 300))
        {
            let ct = encrypt_with(len, to, |w| w.write_all(&vec![7u8; len])).unwrap();
            assert!(
                ct.len() <= encrypted_len(len, to.len())
                    && ct.capacity() == encrypted_len(len, to.len())
            );
        }
        assert!(matches!(
            decrypt(&ct, &[&other], 1 << 20),
            Err(EnvelopeError::NoMatchingKey)
        ));
        assert!(matches!(
            decrypt(&ct, &[&id], 1000),
            Err(EnvelopeError::TooLarge(1000))
        ));
        let mut flipped = ct.clone();
        let n = flipped.len();
        flipped[n - 100] ^= 1;
        assert!(matches!(
            decrypt(&flipped, &[&id], 1 << 20),
            Err(EnvelopeError::Damaged)
        ));
        assert!(matches!(
            decrypt(&ct[..n - 10], &[&id], 1 << 20),
            Err(EnvelopeError::Damaged)
        ));
        assert!(matches!(
            decrypt(b"garbage", &[&id], 10),
            Err(EnvelopeError::NotAge)
        ));
    }

    #[test]
    fn seekable_reads_any_range() {
        let id = x25519::Identity::generate();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let ct = encrypt(&data, &[id.to_public()]);
        let mut r = SeekableReader::open(io::Cursor::new(ct), &[&id]).unwrap();
        assert_eq!(r.plaintext_len().unwrap(), data.len() as u64);
        assert_eq!(r.read_at(70_000, 1000).unwrap(), &data[70_000..71_000]);
        assert_eq!(r.read_at(5, 10).unwrap(), &data[5..15]);
        assert!(r.read_at(299_999, 10).is_err());
    }

    #[test]
    fn passphrase() {
        let ct = encrypt_with_passphrase(b"secret", "correct horse", 2);
        assert!(is_passphrase_encrypted(&ct).unwrap());
        assert_eq!(
            decrypt_with_passphrase(&ct, "correct horse", 20, 100).unwrap(),
            b"secret"
        );
        assert!(matches!(
            decrypt_with_passphrase(&ct, "wrong", 20, 100),
            Err(EnvelopeError::WrongPassphrase)
        ));
    }
}
