//! Process-wide settings applied once at start-up, before the runtimes start.
//!
//! Transparent huge pages are turned off for this process. mimalloc (the binary's allocator) used to
//! `madvise(MADV_HUGEPAGE)` its regions, so a thread touching fresh heap memory took a page fault that zeroes a
//! whole 2 MiB page. On VMs whose host reclaims idle guest memory (balloon free-page reporting, DAMON), that first
//! touch was measured here at p50 7 ms and up to 15 ms per 2 MiB page (4 KiB pages: ~4 µs each). In the relayer
//! bench at 2,000 relays/s, huge-page faults were 10–25 % of the process's CPU samples and stalled whichever
//! worker hit them, with every relay queued behind it (BENCHMARKS.md, Relayer). With 4 KiB pages the same
//! faults cost 2–6 %, spread thinly. The heap of a relay miner is small, so huge pages buy little TLB reach.
//!
//! The allocator is also built with mimalloc's `no_thp` feature (no `madvise`); the `prctl` here covers hosts
//! whose THP mode is `always`, where huge pages come without being asked for.

/// Disables transparent huge pages for the whole process (`prctl(PR_SET_THP_DISABLE)`; inherited by
/// children). A no-op on other systems than Linux.
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_after_the_call() {
        super::disable_transparent_huge_pages().unwrap();
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
    }
}
