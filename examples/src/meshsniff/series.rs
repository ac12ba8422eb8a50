//! The per-endpoint aggregate both the table and `/metrics` read: one series per (protocol,
//! server, endpoint), each with its request counts by outcome, bytes, a latency sketch (the
//! table's quantiles) and the Prometheus histogram `/metrics` exports (with exemplars).
//!
//! Memory is bounded by the number of series, never by the number of records: past
//! `max_series`, a record counts in its server's `endpoint="other"` series (at most
//! [`MAX_OVERFLOW_SERIES`] of those), else in the one series of its protocol with server and
//! endpoint `other`, and every such record counts as refused.

use std::collections::HashMap;
use std::net::SocketAddr;

use prometheus_client::metrics::exemplar::HistogramWithExemplars;

use super::Record;
use super::endpoint::{Observation, Outcome, Protocol, observe};
use super::sketch::LatencySketch;
use super::trace::exemplar_label;

/// Series that overflowing records may add (one per server).
pub const MAX_OVERFLOW_SERIES: usize = 256;

/// The endpoint label of records refused a series of their own.
pub const OTHER: &str = "other";

/// Upper bounds of the exported latency buckets: 2^6 µs (64 µs) to 2^25 µs (33.6 s), doubling.
/// Powers of two of microseconds, so each is a bound of the sketch's sub-buckets too.
pub fn bucket_bounds() -> impl Iterator<Item = f64> {
    (6..=25).map(|octave| f64::from(1u32 << octave) / 1e6)
}

/// The exemplar's label: `trace_id` or `request_id`, and its value.
pub type ExemplarLabel = [(&'static str, String); 1];

/// The counts of one (protocol, server, endpoint).
#[derive(Debug)]
pub struct Series {
    /// Requests by outcome, indexed by [`Outcome::index`].
    pub outcomes: [u64; Outcome::ALL.len()],
    /// Request bytes.
    pub request_bytes: u64,
    /// Response bytes.
    pub response_bytes: u64,
    /// Latencies, for quantiles.
    pub sketch: LatencySketch,
    /// Latencies in seconds, as exported.
    pub histogram: HistogramWithExemplars<ExemplarLabel>,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            outcomes: [0; Outcome::ALL.len()],
            request_bytes: 0,
            response_bytes: 0,
            sketch: LatencySketch::default(),
            histogram: HistogramWithExemplars::new(bucket_bounds()),
        }
    }
}

impl Series {
    /// Requests counted.
    pub fn requests(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    /// Requests that failed (see [`Outcome::is_error`]).
    pub fn errors(&self) -> u64 {
        Outcome::ALL
            .iter()
            .filter(|o| o.is_error())
            .map(|o| self.outcomes[o.index()])
            .sum()
    }
}

/// The server label: an address, or `other` for overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Server {
    /// The server's address.
    Addr(SocketAddr),
    /// Records refused a series of their own, from any server.
    Other,
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Addr(a) => a.fmt(f),
            Self::Other => f.write_str(OTHER),
        }
    }
}

/// Every series, bounded.
#[derive(Debug)]
pub struct SeriesTable {
    /// Series by (protocol, server), then endpoint: looked up by `&str`, so a known endpoint
    /// allocates nothing.
    groups: HashMap<(Protocol, Server), HashMap<Box<str>, Series>>,
    series: usize,
    overflow_series: usize,
    max_series: usize,
    refused: u64,
    records: u64,
    /// Reused for each record's endpoint.
    endpoint: String,
}

impl SeriesTable {
    /// An empty table of at most `max_series` series (plus overflow series).
    pub fn new(max_series: usize) -> Self {
        Self {
            groups: HashMap::new(),
            series: 0,
            overflow_series: 0,
            max_series,
            refused: 0,
            records: 0,
            endpoint: String::new(),
        }
    }

    /// Counts one record.
    pub fn add(&mut self, record: &Record) {
        self.records += 1;
        let mut endpoint = std::mem::take(&mut self.endpoint);
        let observation = observe(record, &mut endpoint);
        // An exemplar goes on a latency bucket: none to read without a latency.
        let exemplar = record
            .http()
            .filter(|_| observation.latency_ns.is_some())
            .and_then(|t| t.request.as_ref())
            .and_then(exemplar_label);
        if let Some(series) = self.series_for(observation.protocol, record.server, &endpoint) {
            count(series, &observation, exemplar);
        }
        self.endpoint = endpoint;
    }

    /// The series a record of `endpoint` counts in, created when the bounds allow.
    fn series_for(
        &mut self,
        protocol: Protocol,
        server: SocketAddr,
        endpoint: &str,
    ) -> Option<&mut Series> {
        let server = Server::Addr(server);
        let known = self
            .groups
            .get(&(protocol, server))
            .is_some_and(|g| g.contains_key(endpoint));
        let (server, endpoint) = if known || self.series < self.max_series {
            (server, endpoint)
        } else {
            self.refused += 1;
            let has_other = self
                .groups
                .get(&(protocol, server))
                .is_some_and(|g| g.contains_key(OTHER));
            if has_other || self.overflow_series < MAX_OVERFLOW_SERIES {
                (server, OTHER)
            } else {
                (Server::Other, OTHER)
            }
        };
        let group = self.groups.entry((protocol, server)).or_default();
        if !group.contains_key(endpoint) {
            if endpoint == OTHER && !known {
                self.overflow_series += 1;
            } else {
                self.series += 1;
            }
            group.insert(endpoint.into(), Series::default());
        }
        group.get_mut(endpoint)
    }

    /// Records counted.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records that found no room for their own series.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Series held (including overflow series).
    pub fn len(&self) -> usize {
        self.series + self.overflow_series
    }

    /// Whether no record was counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every series with its labels, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Protocol, Server, &str, &Series)> {
        self.groups.iter().flat_map(|((protocol, server), group)| {
            group
                .iter()
                .map(move |(endpoint, series)| (*protocol, *server, &**endpoint, series))
        })
    }
}

fn count(series: &mut Series, o: &Observation, exemplar: Option<(&'static str, String)>) {
    series.outcomes[o.outcome.index()] += 1;
    series.request_bytes += o.request_bytes;
    series.response_bytes += o.response_bytes;
    if let Some(nanos) = o.latency_ns {
        series.sketch.record(nanos);
        series.histogram.observe(
            nanos as f64 / 1e9,
            exemplar.map(|(name, value)| [(name, value)]),
            None,
        );
    }
}
