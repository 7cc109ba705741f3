//! A file's content as a reader: its blobs, loaded and verified one at a time.

use super::follow::Feed;
use crate::loader::Loader;
use cairn_format::Id;
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

/// Write the blobs of `content` into `file` at their offsets, visiting them grouped by pack and
/// frame, so each frame is read and decompressed once however the file's blobs are spread over
/// packs (an etcd snapshot a year old draws its pages from every day since). Each blob is
/// verified against its keyed hash. Blobs of zeros are not written but left as holes (the file
/// is extended to its full length at the end), so a sparse file restores sparse. A file of a
/// few frames is written here, through the loader's caches (small files of one frame share
/// its decompression); a larger one by [`super::content`]'s threads. `feed` (if any) gets the
/// file's bytes in order once written (see [`super::follow`]). Ids, when owned, are freed
/// once placed (the plan refers to the index instead: 32 bytes per blob less while writing).
/// Returns the bytes written.
pub fn write_content(
    loader: &mut Loader,
    file: &std::fs::File,
    content: super::FileContent<'_>,
    progress: impl Fn(u64) + Sync,
    feed: Option<Feed<'_>>,
) -> crate::Result<u64> {
    use std::os::unix::fs::FileExt;
    let plan = super::content::Plan::new(loader, content)?;
    if plan.frames() > SMALL_FRAMES {
        return super::content::write(loader, &plan, file, &progress, feed);
    }
    // Pieces of one blob are adjacent in the plan: a zero blob is loaded once.
    let mut last_zero: Option<Id> = None;
    plan.each_placement(|p| {
        if last_zero != Some(p.id) {
            let blob = loader.load(&p.id)?;
            if is_zero(&blob) {
                last_zero = Some(p.id);
            } else {
                file.write_all_at(&blob, p.at)
                    .map_err(super::sys("writing the restored file"))?;
            }
        }
        progress(u64::from(p.len));
        Ok(())
    })?;
    file.set_len(plan.len)
        .map_err(super::sys("setting the restored file's length"))?;
    if let Some(feed) = feed {
        super::follow::feed_written(file, plan.len, feed)?;
    }
    Ok(plan.len)
}

/// Files of at most this many frames are written without threads.
const SMALL_FRAMES: usize = 2;

/// True when `b` holds only zero bytes.
pub(super) fn is_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    // OR-folding a fixed-size block compiles to vector instructions.
    blocks.all(|c| c.iter().fold(0, |acc, &x| acc | x) == 0)
        && blocks.remainder().iter().all(|&x| x == 0)
}
