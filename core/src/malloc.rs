//! Allocator settings for the processes that move data in buffers of a megabyte or more (the
//! servers and wdevd), set once at start (docs/design.md, "The pipeline", "Memory").
//!
//! glibc's defaults hand every buffer over 128 KiB to its own `mmap` until a freed one raises
//! the threshold, and give memory back to the kernel as soon as 2× that threshold lies free at
//! the top of a heap. A transfer allocates and frees a megabyte per message on several threads,
//! so each one came as fresh pages: a page fault and a zeroed page for every 4 KiB moved (about
//! a third of the CPU a full backup cost on both ends). Large buffers now come from the heaps,
//! and up to `KEEP` of free memory stays there for the next message.

/// Buffers up to this size come from the heaps, not from an `mmap` each.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory a heap keeps before it gives the rest back to the kernel.
const KEEP: i32 = 256 << 20;

/// Applies the settings above; a C library without them is left as it is.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes two of the allocator's global parameters; it is called with
    // valid option constants and takes effect for every later allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP);
    }
}
