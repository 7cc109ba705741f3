//! A file's content as a reader: its blobs, loaded and verified one at a time.

use cairn_format::Id;
use cairn_store::loader::Loader;
use std::io::{self, Read};

/// Reads the concatenation of `ids`, each verified against its keyed hash.
pub struct BlobReader<'a> {
    loader: &'a mut Loader,
    ids: std::slice::Iter<'a, Id>,
    current: Vec<u8>,
    pos: usize,
}

impl<'a> BlobReader<'a> {
    /// A reader over the blobs `ids`.
    pub fn new(loader: &'a mut Loader, ids: &'a [Id]) -> Self {
        BlobReader {
            loader,
            ids: ids.iter(),
            current: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            let Some(id) = self.ids.next() else {
                return Ok(0);
            };
            self.current = self.loader.load(id).map_err(io::Error::other)?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Write the blobs `ids` into `file` at their offsets, visiting them grouped by pack and
/// frame, so each frame is read and decompressed once however the file's blobs are spread over
/// packs (an etcd snapshot a year old draws its pages from every day since). Each blob is
/// verified against its keyed hash. Blobs of zeros are not written but left as holes (the file
/// is extended to its full length at the end), so a sparse file restores sparse; a zero blob
/// verified once is not loaded again. Returns the bytes written; memory is one frame plus 16
/// bytes per blob.
pub fn write_content(
    loader: &mut Loader,
    file: &std::fs::File,
    ids: &[Id],
    mut progress: impl FnMut(u64),
) -> anyhow::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut plan = Vec::with_capacity(ids.len());
    let mut offset = 0u64;
    for (i, id) in ids.iter().enumerate() {
        let loc = loader
            .index()
            .get(id)
            .ok_or(cairn_store::Error::BlobMissing(*id))?;
        plan.push((loc.pack, loc.frame.offset, offset, i));
        offset += u64::from(loc.len);
    }
    plan.sort_unstable();
    let mut zeros = std::collections::HashMap::<Id, u64>::new();
    for (_, _, at, i) in plan {
        if let Some(len) = zeros.get(&ids[i]) {
            progress(*len);
            continue;
        }
        let blob = loader.load(&ids[i])?;
        if is_zero(&blob) {
            zeros.insert(ids[i], blob.len() as u64);
        } else {
            file.write_all_at(&blob, at)?;
        }
        progress(blob.len() as u64);
    }
    file.set_len(offset)?;
    Ok(offset)
}

/// True when `b` holds only zero bytes.
fn is_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    // OR-folding a fixed-size block compiles to vector instructions.
    blocks.all(|c| c.iter().fold(0, |acc, &x| acc | x) == 0)
        && blocks.remainder().iter().all(|&x| x == 0)
}
