//! Shared pieces of the example programs: Prometheus text exposition, tcpstat's sources and
//! renderers.

pub mod capture;
pub mod meshsniff;
pub mod prom;
pub mod tcpsource;
pub mod tcpstat;
