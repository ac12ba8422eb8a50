//! Shared pieces of the example programs: tcpstat's sources and renderers, the capture readers
//! (files and live AF_PACKET), meshsniff's pipeline and metrics, the one HTTP server every
//! exporter uses, tracehdr's service, and mxproxy (peerx inside a mutual-TLS TCP proxy) with its
//! echo and load drivers.

pub mod capture;
pub mod exposition;
pub mod meshsniff;
pub mod metadata_json;
pub mod mxecho;
pub mod mxproxy;
pub mod serve;
pub mod signals;
pub mod tcpsource;
pub mod tcpstat;
pub mod tracehdr;
