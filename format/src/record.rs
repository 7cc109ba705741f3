//! Record framing shared by every postcard-encoded object: an 8-byte header followed by the
//! postcard body.
//!
//! ```text
//! offset size field
//! 0      5    magic  b"cairn"
//! 5      1    kind   one ASCII letter (see RecordKind)
//! 6      2    version, u16 little-endian
//! 8      ..   postcard body
//! ```

use crate::{Error, FORMAT_VERSION};
use serde::{de::DeserializeOwned, Serialize};

/// Length of the record header.
pub const HEADER_LEN: usize = 8;
const MAGIC: &[u8; 5] = b"cairn";

/// The kinds of record, each with its own letter in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// `config` object.
    Config,
    /// Repository secrets inside `keys/<id>` and write-key files.
    Keys,
    /// Pack trailer.
    PackTrailer,
    /// `index/<id>` object.
    Index,
    /// Tree blob.
    Tree,
    /// `snapshots/<id>` object.
    Snapshot,
    /// `locks/<name>` lease object.
    Lease,
    /// `gc/<id>` prune marker.
    Gc,
    /// Content list blob (SPEC §9.1).
    ContentList,
}

impl RecordKind {
    fn letter(self) -> u8 {
        match self {
            RecordKind::Config => b'C',
            RecordKind::Keys => b'K',
            RecordKind::PackTrailer => b'P',
            RecordKind::Index => b'I',
            RecordKind::Tree => b'T',
            RecordKind::Snapshot => b'S',
            RecordKind::Lease => b'L',
            RecordKind::Gc => b'G',
            RecordKind::ContentList => b'N',
        }
    }

    /// The newest version of this kind's records: what [`encode`] writes and the highest
    /// [`decode`] accepts. Keys records are at version 2 (key object metadata, SPEC §5), trees
    /// at version 3 (content lists, several per file, SPEC §9.1); every other kind at
    /// [`FORMAT_VERSION`].
    pub fn current_version(self) -> u16 {
        match self {
            RecordKind::Tree => 3,
            RecordKind::Keys => 2,
            _ => FORMAT_VERSION,
        }
    }

    /// Human name, used in errors.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Config => "config",
            RecordKind::Keys => "keys",
            RecordKind::PackTrailer => "pack trailer",
            RecordKind::Index => "index",
            RecordKind::Tree => "tree",
            RecordKind::Snapshot => "snapshot",
            RecordKind::Lease => "lease",
            RecordKind::Gc => "gc marker",
            RecordKind::ContentList => "content list",
        }
    }
}

/// Encode `value` as a record of `kind` at its current version.
pub fn encode<T: Serialize>(kind: RecordKind, value: &T) -> Vec<u8> {
    encode_at(kind, kind.current_version(), value)
}

/// Encode `value` as a record of `kind` at `version`, for writers that keep an older layout
/// readable by older readers (the caller makes sure `value` has that version's layout).
pub fn encode_at<T: Serialize>(kind: RecordKind, version: u16, value: &T) -> Vec<u8> {
    encode_sized(kind, version, value, 256)
}

/// [`encode_at`] into a buffer of `capacity` bytes to start with (a writer that knows about
/// how long the record is spares the buffer's regrowth).
pub fn encode_sized<T: Serialize>(
    kind: RecordKind,
    version: u16,
    value: &T,
    capacity: usize,
) -> Vec<u8> {
    let out = Vec::with_capacity(capacity.max(HEADER_LEN));
    // Writing into a Vec cannot fail, nor postcard encoding of the plain data types used here.
    encode_to(kind, version, value, out).expect("record encoding to a Vec")
}

/// Write `value` as a record of `kind` at `version` to `out`, as it is encoded (an encrypting
/// writer then never holds the plaintext whole); `out` back when done. postcard writes a
/// field, often a byte, at a time: a writer with a cost per call wants a buffer in front.
pub fn encode_to<T: Serialize, W: std::io::Write>(
    kind: RecordKind,
    version: u16,
    value: &T,
    mut out: W,
) -> std::io::Result<W> {
    out.write_all(MAGIC)?;
    out.write_all(&[kind.letter()])?;
    out.write_all(&version.to_le_bytes())?;
    // postcard reports a failed write without its cause.
    postcard::to_io(value, out)
        .map_err(|e| std::io::Error::other(format!("encoding a {} record: {e}", kind.name())))
}

/// The length of `value` encoded as a record, header included.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    // Measuring cannot fail for the plain data types used here; 0 only costs a regrowth.
    HEADER_LEN
        + postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
            .unwrap_or(0)
}

/// The version of a record of `kind`, checking magic and that the version is supported.
pub fn version(kind: RecordKind, bytes: &[u8]) -> Result<u16, Error> {
    let name = kind.name();
    if bytes.len() < HEADER_LEN {
        return Err(Error::Truncated { what: name });
    }
    if &bytes[..5] != MAGIC || bytes[5] != kind.letter() {
        return Err(Error::BadMagic { expected: name });
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version > kind.current_version() || version == 0 {
        return Err(Error::UnsupportedVersion {
            kind: name,
            found: version,
            supported: kind.current_version(),
        });
    }
    Ok(version)
}

/// Decode a record of `kind`, checking magic and version; trailing bytes are an error. Kinds
/// whose layout differs between versions call [`version`] first and pick `T` by it.
pub fn decode<T: DeserializeOwned>(kind: RecordKind, bytes: &[u8]) -> Result<T, Error> {
    let name = kind.name();
    version(kind, bytes)?;
    let (value, rest) = take::<T>(name, &bytes[HEADER_LEN..])?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            name,
            format!("{} unexpected trailing bytes", rest.len()),
        ));
    }
    Ok(value)
}

/// Decode one postcard value of a record's body (`what` names it in errors), returning the
/// bytes after it: for layouts that append sections to an older version's body.
pub fn take<'a, T: DeserializeOwned>(
    what: &'static str,
    body: &'a [u8],
) -> Result<(T, &'a [u8]), Error> {
    crate::bounded::take_refusal();
    postcard::take_from_bytes::<T>(body).map_err(|e| {
        Error::malformed(
            what,
            crate::bounded::take_refusal().unwrap_or_else(|| said(&e)),
        )
    })
}

/// postcard's error in the words of a damaged object (its own texts speak of Rust types).
fn said(e: &postcard::Error) -> String {
    use postcard::Error as P;
    match e {
        P::DeserializeUnexpectedEnd => "it ends before its last field".into(),
        P::DeserializeBadVarint => "a number in it is not validly encoded".into(),
        P::DeserializeBadBool
        | P::DeserializeBadChar
        | P::DeserializeBadUtf8
        | P::DeserializeBadOption
        | P::DeserializeBadEnum
        | P::DeserializeBadEncoding => "a field in it holds an impossible value".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_checked() {
        let bytes = encode(RecordKind::Index, &vec![1u32, 2, 3]);
        assert_eq!(&bytes[..8], b"cairnI\x01\x00");
        assert_eq!(
            decode::<Vec<u32>>(RecordKind::Index, &bytes).unwrap(),
            vec![1, 2, 3]
        );
        assert!(matches!(
            decode::<Vec<u32>>(RecordKind::Tree, &bytes),
            Err(Error::BadMagic { .. })
        ));
        let mut newer = bytes.clone();
        newer[6] = 2;
        assert!(matches!(
            decode::<Vec<u32>>(RecordKind::Index, &newer),
            Err(Error::UnsupportedVersion { found: 2, .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<Vec<u32>>(RecordKind::Index, &longer).is_err());
        assert!(decode::<Vec<u32>>(RecordKind::Index, &bytes[..4]).is_err());
    }
}
