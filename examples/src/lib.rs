//! Shared pieces of the example programs: Prometheus text exposition and small CLI helpers.

pub mod prom;
