//! Bounded sequence decoding: element counts and decoded memory checked while decoding, so a
//! small hostile record cannot expand into gigabytes before validation sees it (a 2-byte empty
//! extended attribute decodes into a 48-byte struct: 16 MiB of them would be 400 MB).

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

thread_local! {
    /// Why the last bounded decode on this thread failed: postcard keeps no message of a
    /// custom error, so [`crate::record::decode`] takes it from here.
    static REFUSAL: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The reason of the last refusal on this thread, if any (cleared).
pub(crate) fn take_refusal() -> Option<String> {
    REFUSAL.with(|r| r.borrow_mut().take())
}

fn refuse<E: serde::de::Error>(msg: String) -> E {
    REFUSAL.with(|r| *r.borrow_mut() = Some(msg.clone()));
    E::custom(msg)
}

/// Limits of one sequence.
pub(crate) struct Limits<T> {
    /// What the elements are, for the error message.
    pub what: &'static str,
    /// Most elements accepted.
    pub max_len: usize,
    /// Most decoded bytes accepted, as estimated by `cost`.
    pub max_bytes: usize,
    /// Estimated heap and inline bytes of one decoded element; also validates it.
    pub cost: fn(&T) -> Result<usize, String>,
}

/// Decode a sequence within `limits`.
pub(crate) fn vec<'de, D, T>(d: D, limits: Limits<T>) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(Limits<T>, PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {} {}", self.0.max_len, self.0.what)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let l = &self.0;
            if seq.size_hint().is_some_and(|n| n > l.max_len) {
                return Err(refuse(format!("more than {} {}", l.max_len, l.what)));
            }
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            let mut bytes = 0usize;
            while let Some(x) = seq.next_element::<T>()? {
                bytes += (l.cost)(&x).map_err(refuse)?;
                if out.len() == l.max_len || bytes > l.max_bytes {
                    return Err(refuse(format!(
                        "{} exceed {} entries or {} decoded bytes",
                        l.what, l.max_len, l.max_bytes
                    )));
                }
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V(limits, PhantomData))
}

/// Allocation overhead counted per heap allocation (malloc's header and rounding).
pub(crate) const ALLOC: usize = 16;

/// Decoded cost of a byte string or String of `len` bytes held in a struct.
pub(crate) fn bytes_cost(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len + ALLOC
    }
}
