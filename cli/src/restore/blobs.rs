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
