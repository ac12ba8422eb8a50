#![allow(unsafe_code)] // a global allocator can only be written with unsafe; it delegates to System unchanged

//! A counting global allocator, for reporting allocations per operation next to the timings.
//!
//! Nothing installs it by itself: a test or bench binary that wants the counts does, with
//! `#[global_allocator] static A: testkit::alloc_count::CountingAlloc = CountingAlloc;`.
//! Without that, [`allocations_during`] always reports 0.
//!
//! What counts as one allocation: each call of `alloc`, `alloc_zeroed` or `realloc` (a growth
//! moves or extends a block, which is what an allocation count is meant to expose). `dealloc`
//! is not counted. The counter is per thread, so other threads' allocations never leak into a
//! measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // `const` initialisation and a type without a destructor: reading or bumping it never
    // allocates and never registers a TLS destructor, so it is safe to touch from inside the
    // allocator.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    // Bytes allocated minus bytes freed by this thread, and the highest that reached.
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn grow(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

/// Heap bytes this thread holds now (allocated minus freed since it started).
pub fn live_bytes() -> i64 {
    LIVE.try_with(Cell::get).unwrap_or(0)
}

/// Forgets the highest live count so far: [`peak_bytes`] reports from here.
pub fn reset_peak() {
    let _ = PEAK.try_with(|peak| peak.set(live_bytes()));
}

/// The most heap bytes this thread held since [`reset_peak`].
pub fn peak_bytes() -> i64 {
    PEAK.try_with(Cell::get).unwrap_or(0)
}

/// Runs `f` and returns its result with the most heap bytes this thread held during it, above
/// what it held when `f` started (memory freed by another thread is not seen).
pub fn peak_bytes_during<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let start = LIVE.try_with(Cell::get).unwrap_or(0);
    let _ = PEAK.try_with(|peak| peak.set(start));
    let out = f();
    let peak = PEAK.try_with(Cell::get).unwrap_or(start);
    (out, u64::try_from(peak - start).unwrap_or(0))
}

fn bump() {
    // `try_with`: after this thread's TLS is torn down (late allocations during thread exit) the
    // count is simply skipped.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get().wrapping_add(1)));
}

/// Allocations made so far on this thread (since the thread started).
pub fn allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

/// Runs `f` and returns its result with the number of allocations it made on this thread.
pub fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = allocations();
    let out = f();
    let after = allocations();
    (out, after.wrapping_sub(before))
}

/// [`System`], plus a per-thread count of allocations (see the module docs for what counts).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the only additions are updates of thread-local `Cell`s, which neither
// allocate nor unwind.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        grow(layout.size() as i64);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract (non-zero size layout);
        // passed through unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        grow(layout.size() as i64);
        // SAFETY: as for `alloc`; passed through unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        grow(new_size as i64 - layout.size() as i64);
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence from `System`)
        // with `layout`, and that `new_size` is valid; passed through unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        grow(-(layout.size() as i64));
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence from `System`)
        // with `layout`; passed through unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}
