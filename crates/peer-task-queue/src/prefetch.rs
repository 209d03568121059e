//! Hints to the processor to start loading cache lines: the one use of `unsafe` in the crate.
//!
//! A plain read of a cold line holds up every instruction behind it once the processor's
//! window fills; a prefetch retires at once and the line arrives in the background. With
//! 100,000 peers, prefetching the next peers' state and tasks took QW4's drain from 460-510 to
//! 370-410 ns per task.

/// Bytes in a cache line.
const LINE: usize = 64;

/// Starts loading the cache line that holds the start of `value`.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    prefetch_address(std::ptr::from_ref(value).cast());
}

/// Starts loading every cache line of `value`.
#[inline(always)]
pub(crate) fn prefetch_all<T>(value: &T) {
    let start: *const u8 = std::ptr::from_ref(value).cast();
    let mut offset = 0;
    while offset < size_of::<T>() {
        prefetch_address(start.wrapping_add(offset));
        offset += LINE;
    }
    // The last line, which the steps above miss when `value` does not start a line.
    if let Some(last) = size_of::<T>().checked_sub(1) {
        prefetch_address(start.wrapping_add(last));
    }
}

#[inline(always)]
fn prefetch_address(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    #[allow(
        unsafe_code,
        reason = "a prefetch, measured to pay (see the module docs); see the SAFETY note"
    )]
    // SAFETY: `_mm_prefetch` is unsafe only because it is a `target_feature` function; its
    // feature, SSE, is in the x86-64 baseline. A prefetch never faults, whatever the address,
    // and reads or writes nothing the program can observe; the callers pass addresses inside
    // live values anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
