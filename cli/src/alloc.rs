//! Allocator tuning for a flat memory profile.
//!
//! glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), after
//! which 16 MiB pack buffers come from per-thread heap arenas and stay resident there once
//! freed: peak RSS then grows with the number of threads that ever held a pack. A fixed
//! threshold keeps every buffer of 1 MiB or more in its own mapping, returned on free.

/// Allocations from this size up are mapped and unmapped individually.
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Apply the tuning; call before starting threads.
pub fn tune() {
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread
    // starts. Its result (0 on failure) only means the default behaviour stays.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
