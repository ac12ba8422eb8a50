//! Side-by-side timing harness: each case runs our code and the anchor's on the same input,
//! interleaved in one process, and reports both times and their ratio.

pub mod flows_cases;
pub mod harness;
pub mod l7decode_cases;
pub mod mongo_cases;
pub mod mysql_cases;
pub mod otel_cases;
pub mod peerx_cases;
pub mod tcpwire_cases;
pub mod tracectx_cases;

/// The counting allocator the tests share; binaries install it to report allocations per call.
pub use testkit::alloc_count;

/// The lib's unit tests count allocations (`otel_cases` tests); binaries install their own.
#[cfg(test)]
#[global_allocator]
static ALLOC: alloc_count::CountingAlloc = alloc_count::CountingAlloc;
