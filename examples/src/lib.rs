//! Shared pieces of the example programs: the command-line convention, Prometheus text
//! exposition, tcpstat's sources and renderers, the capture readers (files and live AF_PACKET),
//! meshsniff's pipeline and metrics, the one HTTP server, and mxproxy (peerx inside a mutual-TLS
//! TCP proxy) with its echo and load drivers, and tracehdr's pieces.

pub mod capture;
pub mod cli;
pub mod meshsniff;
pub mod metadata_json;
pub mod mxecho;
pub mod mxproxy;
pub mod serve;
pub mod tcpsource;
pub mod tcpstat;
pub mod tracehdr;
