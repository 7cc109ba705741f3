//! A value being made on a thread of its own, waited for where it is first needed: a backup's
//! lease, index and previous content list load while its source is already read and hashed.

use crate::{Error, Result};
use crossbeam_channel::{bounded, never, Receiver, RecvError};

/// A value made on another thread, or already at hand. Dropped before the value arrived, it
/// waits for the thread and drops the value there and then: a backup that fails early still
/// releases the lease its starting thread took, before the process exits.
pub struct Pending<T> {
    rx: Receiver<Result<T>>,
    value: Option<T>,
    /// What the thread makes, for the error if it dies.
    what: &'static str,
    /// Whether a thread makes it (the channel then ends when the thread does).
    spawned: bool,
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        if self.spawned && self.value.is_none() {
            let _ = self.rx.recv();
        }
    }
}

impl<T: Send + 'static> Pending<T> {
    /// Make the value with `make` on a new thread named `name`.
    pub fn spawn(
        name: &str,
        what: &'static str,
        make: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<Self> {
        let (tx, rx) = bounded(1);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = tx.send(make());
            })
            .map_err(|e| Error::Invalid(format!("could not start a thread for {what}: {e}")))?;
        Ok(Pending {
            rx,
            value: None,
            what,
            spawned: true,
        })
    }
}

impl<T> Pending<T> {
    /// A value already made.
    pub fn ready(value: T) -> Self {
        Pending {
            rx: never(),
            value: Some(value),
            what: "a value at hand",
            spawned: false,
        }
    }

    /// The value if it is made, without waiting; its maker's error once.
    pub fn poll(&mut self) -> Result<Option<&mut T>> {
        if self.value.is_none() {
            match self.rx.try_recv() {
                Ok(made) => self.value = Some(made?),
                Err(e) if e.is_empty() => return Ok(None),
                Err(_) => return Err(self.stopped()),
            }
        }
        Ok(self.value.as_mut())
    }

    /// The value, waiting for it.
    pub fn get(&mut self) -> Result<&mut T> {
        if self.value.is_none() {
            let made = self.rx.recv();
            self.accept(made)?;
        }
        let what = self.what;
        self.value.as_mut().ok_or_else(|| stopped(what))
    }

    /// The value, waiting for it.
    pub fn wait(mut self) -> Result<T> {
        self.get()?;
        self.value.take().ok_or_else(|| self.stopped())
    }

    /// Whether the value is at hand.
    pub fn is_ready(&self) -> bool {
        self.value.is_some()
    }

    /// The channel the value arrives on, for a `select!`: one that never delivers once the
    /// value is at hand. What it delivers goes to [`Pending::accept`].
    pub fn arrival(&self) -> Receiver<Result<T>> {
        if self.value.is_some() {
            never()
        } else {
            self.rx.clone()
        }
    }

    /// Take what [`Pending::arrival`] delivered.
    pub fn accept(&mut self, made: std::result::Result<Result<T>, RecvError>) -> Result<()> {
        match made {
            Ok(made) => {
                self.value = Some(made?);
                Ok(())
            }
            Err(_) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> Error {
        stopped(self.what)
    }
}

/// The error of a thread making `what` that ended without a result.
fn stopped(what: &str) -> Error {
    Error::Invalid(format!("the thread making {what} stopped without a result"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn values_errors_and_dead_makers() {
        let mut p = Pending::spawn("t", "a number", || Ok(7)).unwrap();
        assert_eq!(*p.get().unwrap(), 7);
        assert_eq!(*p.poll().unwrap().unwrap(), 7);
        assert_eq!(p.wait().unwrap(), 7);

        let mut e =
            Pending::<u8>::spawn("t", "a number", || Err(Error::Invalid("no".into()))).unwrap();
        assert_eq!(
            e.get().unwrap_err().to_string(),
            Error::Invalid("no".into()).to_string()
        );

        let mut dead = Pending::<u8>::spawn("t", "a number", || panic!("boom")).unwrap();
        assert!(dead.get().unwrap_err().to_string().contains("a number"));

        // Dropped before its value arrived: the value is made and dropped before the drop ends.
        let dropped = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = dropped.clone();
        let early = Pending::spawn("t", "a flag", move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(Flag(flag))
        })
        .unwrap();
        drop(early);
        assert!(dropped.load(Ordering::SeqCst));

        let mut r = Pending::ready(3);
        assert!(r.is_ready());
        assert_eq!(*r.poll().unwrap().unwrap(), 3);
    }
}
