//! x86-64.

/// The base page size: perf's ring buffer is mapped in pages, the quiesce
/// scratch pages and the status page are one page each, the stack is
/// prefaulted a page at a time.
pub const PAGE: usize = 4096;
