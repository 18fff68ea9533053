//! The binaries' global allocator: the system allocator, wiping every block before it
//! is freed.
//!
//! The library keeps its own secrets in [`zeroize::Zeroizing`] buffers that never grow
//! in place, but a command line tool also moves secrets through code it does not
//! control: standard input read to its end (a growing buffer), serde_json's scratch
//! buffer for escaped strings, `BufWriter` buffers of an export. With this allocator
//! every freed Rust heap block is zeroed first, and `realloc` always moves (allocate,
//! copy, wipe and free the old block), so no copy survives in freed memory. Memory
//! that C libraries (SQLite, LMDB) allocate themselves goes to libc directly and is not
//! covered.

use std::alloc::{GlobalAlloc, Layout, System};

/// See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct WipeOnFree;

/// Zeroes `len` bytes at `ptr` with volatile writes the compiler cannot drop as dead
/// stores before a free.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn wipe(ptr: *mut u8, len: usize) {
    let mut i = 0;
    // Word-sized writes where the block is aligned, bytes elsewhere.
    while i < len && !(ptr as usize + i).is_multiple_of(8) {
        // SAFETY: i < len.
        unsafe { std::ptr::write_volatile(ptr.add(i), 0) };
        i += 1;
    }
    while i + 8 <= len {
        // SAFETY: aligned, in bounds.
        unsafe { std::ptr::write_volatile(ptr.add(i).cast::<u64>(), 0) };
        i += 8;
    }
    while i < len {
        // SAFETY: i < len.
        unsafe { std::ptr::write_volatile(ptr.add(i), 0) };
        i += 1;
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

// SAFETY: every call is forwarded to `System` with the same layout; `dealloc` only
// writes inside the block before freeing it; `realloc` is the trait's default
// (allocate, copy, free), which keeps its contract.
unsafe impl GlobalAlloc for WipeOnFree {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller gives a live block of `layout.size()` bytes.
        unsafe {
            wipe(ptr, layout.size());
            System.dealloc(ptr, layout);
        }
    }
}

/// For a bulk command that runs once and exits (`sasldb import`): memory freed stays
/// with the process for its next allocations instead of going back to the system, so
/// it is not faulted in again. glibc's malloc otherwise serves each block of 128 KiB or
/// more with a mapping of its own, unmapped when freed, and gives the top of its heap
/// back: a 200,000-user PostgreSQL import faulted in 75 MB for a 50 MB peak, about a
/// fifth of its CPU. (Freed blocks are wiped all the same.) Elsewhere a no-op.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's tunables (under malloc's own lock).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipes_before_free_and_moves_on_realloc() {
        let a = WipeOnFree;
        for (size, align) in [(1, 1), (7, 1), (64, 8), (1000, 16), (4099, 4)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: plain use of an allocator.
            unsafe {
                let p = a.alloc(layout);
                std::ptr::write_bytes(p, 0xab, size);
                wipe(p, size);
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                std::ptr::write_bytes(p, 0xcd, size);
                let q = a.realloc(p, layout, size * 3);
                assert!(
                    std::slice::from_raw_parts(q, size)
                        .iter()
                        .all(|&b| b == 0xcd)
                );
                a.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
            }
        }
    }
}
