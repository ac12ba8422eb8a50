//! Shared pieces of the example programs: the command-line convention, Prometheus text
//! exposition, tcpstat's sources and renderers, the capture reader and meshsniff's pipeline.

pub mod capture;
pub mod cli;
pub mod meshsniff;
pub mod prom;
pub mod tcpsource;
pub mod tcpstat;
