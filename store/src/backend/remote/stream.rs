//! A range of a remote object read in order from one streamed response.
//!
//! A restore reads a pack's spans one after the other; one ranged GET per span costs a round
//! trip each and, on servers that close the connection after each response, a new connection.
//! Here the whole run is requested once and its body is received by a task on the backend's
//! runtime as it arrives, handed to the reading thread in batches through a short bounded
//! channel: the server is held back (TCP flow control) rather than the body buffered, so
//! memory stays at a few batches whatever the run's length. A body that breaks off is asked
//! for again from the first byte not yet received (by object_store, then here).

use super::{is_transient, RemoteBackend, READ_ATTEMPTS};
use crate::{Error, Result};
use bytes::{Buf, Bytes};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use object_store::{GetOptions, GetRange};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::ops::Range;

/// Body bytes handed over at once (fewer wake-ups of the reading thread than one per piece
/// of a few KiB as the connection delivers them).
const BATCH: usize = 256 << 10;
/// Batches waiting for the reader before the body is held back.
const QUEUED: usize = 2;

/// What the receiving task sends.
enum Message {
    /// The response head arrived: the object's size.
    Head(u64),
    /// Body pieces, in order.
    Body(Vec<Bytes>),
    /// The request or the body failed.
    Failed(object_store::Error),
}

/// Bytes `pos..end` of a remote object, read in order.
pub(super) struct RemoteStream {
    backend: RemoteBackend,
    path: String,
    /// The object version read (None: the current one).
    version: Option<String>,
    pos: u64,
    end: u64,
    /// Received, not yet read.
    pieces: VecDeque<Bytes>,
    rx: mpsc::Receiver<Message>,
    /// Attempts left. object_store itself asks again for a body that broke off (from where
    /// it broke, with backoff); what still fails is tried again here.
    attempts: usize,
}

impl RemoteStream {
    /// Request `range` of `path` (of its `version`, or the current one); returns once the
    /// response head is in, with the object's size.
    pub(super) fn open(
        backend: &RemoteBackend,
        path: &str,
        version: Option<String>,
        range: Range<u64>,
    ) -> Result<(RemoteStream, u64)> {
        let mut stream = RemoteStream {
            backend: backend.clone(),
            path: path.to_string(),
            version,
            pos: range.start,
            end: range.end,
            pieces: VecDeque::new(),
            rx: mpsc::channel(0).1,
            attempts: READ_ATTEMPTS,
        };
        let size = stream.request()?;
        stream.end = stream.end.min(size);
        Ok((stream, size))
    }

    /// Request `pos..end` and wait for the head: the object's size.
    fn request(&mut self) -> Result<u64> {
        loop {
            let (tx, rx) = mpsc::channel(QUEUED);
            self.rx = rx;
            self.backend.runtime.spawn(receive(
                self.backend.store.clone(),
                self.backend.key(&self.path),
                self.version.clone(),
                self.pos..self.end,
                tx,
            ));
            match self.next_message() {
                Some(Message::Head(size)) => return Ok(size),
                Some(Message::Failed(e)) if is_transient(&e) && self.attempts > 1 => {
                    self.retry(&e);
                }
                Some(Message::Failed(e)) => {
                    return Err(self.backend.error("reading", &self.path, e))
                }
                Some(Message::Body(_)) | None => {
                    return Err(self.incomplete("no response head"));
                }
            }
        }
    }

    fn next_message(&mut self) -> Option<Message> {
        futures::executor::block_on(self.rx.next())
    }

    fn retry(&mut self, e: &object_store::Error) {
        self.attempts -= 1;
        tracing::debug!("reading {} from {}: {e}; retrying", self.path, self.pos);
    }

    fn incomplete(&self, why: &str) -> Error {
        Error::Remote {
            op: "reading",
            object: self.path.clone(),
            location: self.backend.location.clone(),
            cause: format!("the read did not complete: {why}"),
        }
    }

    /// Receive more of the body; false when it ended.
    fn fill(&mut self) -> Result<bool> {
        loop {
            match self.next_message() {
                Some(Message::Body(pieces)) => {
                    self.pieces.extend(pieces);
                    return Ok(true);
                }
                // The body ended where the range (or the object) does.
                None => return Ok(false),
                Some(Message::Failed(e)) if is_transient(&e) && self.attempts > 1 => {
                    self.retry(&e);
                    self.request()?;
                }
                Some(Message::Failed(e)) => {
                    return Err(self.backend.error("reading", &self.path, e))
                }
                Some(Message::Head(_)) => return Err(self.incomplete("a second response head")),
            }
        }
    }
}

impl Read for RemoteStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() && self.pos < self.end {
            let Some(piece) = self.pieces.front_mut() else {
                if n > 0 {
                    break;
                }
                if !self.fill().map_err(io::Error::other)? {
                    break;
                }
                continue;
            };
            let take = piece
                .len()
                .min(out.len() - n)
                .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
            out[n..n + take].copy_from_slice(&piece[..take]);
            piece.advance(take);
            if piece.is_empty() {
                self.pieces.pop_front();
            }
            n += take;
            self.pos += take as u64;
        }
        Ok(n)
    }
}

/// GET `range` of `key` (of its `version`, or the current one) and send its head, then its
/// body in batches, to `tx`; stops when the reader is gone.
async fn receive(
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    key: object_store::path::Path,
    version: Option<String>,
    range: Range<u64>,
    mut tx: mpsc::Sender<Message>,
) {
    let opts = GetOptions {
        range: Some(GetRange::Bounded(range)),
        version,
        ..GetOptions::default()
    };
    let response = match store.get_opts(&key, opts).await {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Message::Failed(e)).await;
            return;
        }
    };
    if tx.send(Message::Head(response.meta.size)).await.is_err() {
        return;
    }
    let mut body = response.into_stream();
    let (mut batch, mut held) = (Vec::new(), 0);
    while let Some(piece) = body.next().await {
        match piece {
            Ok(piece) => {
                held += piece.len();
                batch.push(piece);
                if held >= BATCH {
                    held = 0;
                    if tx
                        .send(Message::Body(std::mem::take(&mut batch)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(e) => {
                if !batch.is_empty() {
                    let _ = tx.send(Message::Body(batch)).await;
                }
                let _ = tx.send(Message::Failed(e)).await;
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Message::Body(batch)).await;
    }
}
