//! `meshsniff --listen`: the per-endpoint series and the agent's own counters as a Prometheus
//! exposition, encoded by `prometheus-client` from one shared state at scrape time.
//!
//! The capture thread writes the state (records as they complete, the agent's counters once per
//! ring block) and the HTTP server reads it under the same lock; nothing is copied between
//! scrapes.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::endpoint::Outcome;
use super::series::SeriesTable;
use crate::exposition::Format;
use crate::exposition::{Escaped, prometheus_text};

/// The agent's own counters (totals since start), as the capture loop last published them.
#[derive(Debug, Default, Clone, Copy)]
pub struct AgentCounters {
    /// Packets the kernel delivered to the ring.
    pub capture_packets: u64,
    /// Their bytes (as captured).
    pub capture_bytes: u64,
    /// Packets the kernel dropped (ring full).
    pub capture_drops: u64,
    /// Flows the tracker holds.
    pub flows_open: u64,
    /// Flows evicted: silent too long.
    pub evicted_idle: u64,
    /// Flows evicted: over the flow count bound.
    pub evicted_max_flows: u64,
    /// Flows evicted: over the memory budget.
    pub evicted_budget: u64,
    /// Bytes skipped inside decoded protocols while resynchronising.
    pub skipped_bytes: u64,
    /// Bytes of connections in protocols not decoded (TLS, unknown).
    pub other_bytes: u64,
    /// Whether the interface is up (1) or down (0).
    pub interface_up: bool,
}

/// What `/metrics` reports: the series and the agent's counters.
#[derive(Debug)]
pub struct MetricsState {
    /// Per-endpoint series.
    pub series: SeriesTable,
    /// The agent's counters.
    pub agent: AgentCounters,
}

/// The state shared by the capture loop and the HTTP server.
pub type SharedState = Arc<Mutex<MetricsState>>;

/// The registry reading `state` at each scrape.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// An exposition of `state`.
    pub fn new(state: SharedState) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(StateCollector(state)));
        Self { registry }
    }

    /// The exposition text in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        match format {
            Format::OpenMetrics => text,
            Format::Prometheus => prometheus_text(&text),
        }
    }
}

#[derive(Debug)]
struct StateCollector(SharedState);

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // A capture thread that panicked left counts that are still worth serving.
        let state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        encode_series(&state.series, &mut encoder)?;
        encode_agent(&state.agent, &state.series, &mut encoder)
    }
}

fn encode_series(table: &SeriesTable, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    // Server labels formatted once per series, not once per family.
    let rows: Vec<_> = table
        .iter()
        .map(|(protocol, server, endpoint, series)| {
            (protocol.label(), server.to_string(), endpoint, series)
        })
        .collect();
    let mut family = encoder.encode_descriptor(
        "meshsniff_requests",
        "Requests seen, by protocol, server, endpoint and outcome.",
        None,
        MetricType::Counter,
    )?;
    for (protocol, server, endpoint, series) in &rows {
        for outcome in Outcome::ALL {
            let n = series.outcomes[outcome.index()];
            if n == 0 {
                continue;
            }
            let [p, s, e] = labels(protocol, server, endpoint);
            let set = [p, s, e, ("outcome", Escaped(outcome.label()))];
            family
                .encode_family(&set)?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "meshsniff_request_duration_seconds",
        "Time from the end of a request to the end of its response.",
        None,
        MetricType::Histogram,
    )?;
    for (protocol, server, endpoint, series) in &rows {
        if series.sketch.count() > 0 {
            let set = labels(protocol, server, endpoint);
            series.histogram.encode(family.encode_family(&set)?)?;
        }
    }
    for (name, help, bytes) in [
        (
            "meshsniff_request_bytes",
            "Request bytes (HTTP: head and body).",
            (|s| s.request_bytes) as fn(&super::series::Series) -> u64,
        ),
        (
            "meshsniff_response_bytes",
            "Response bytes (HTTP: head and body).",
            |s| s.response_bytes,
        ),
    ] {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (protocol, server, endpoint, series) in &rows {
            let set = labels(protocol, server, endpoint);
            family
                .encode_family(&set)?
                .encode_counter::<NoLabelSet, _, u64>(&bytes(series), None)?;
        }
    }
    Ok(())
}

/// A series' label set.
fn labels<'a>(
    protocol: &'a str,
    server: &'a str,
    endpoint: &'a str,
) -> [(&'static str, Escaped<'a>); 3] {
    [
        ("protocol", Escaped(protocol)),
        ("server", Escaped(server)),
        ("endpoint", Escaped(endpoint)),
    ]
}

fn encode_agent(
    agent: &AgentCounters,
    table: &SeriesTable,
    encoder: &mut DescriptorEncoder<'_>,
) -> std::fmt::Result {
    let counters = [
        (
            "meshsniff_capture_packets",
            "Packets the kernel delivered to the capture ring.",
            agent.capture_packets,
        ),
        (
            "meshsniff_capture_bytes",
            "Bytes of the captured packets.",
            agent.capture_bytes,
        ),
        (
            "meshsniff_capture_drops",
            "Packets the kernel dropped because the ring was full.",
            agent.capture_drops,
        ),
        (
            "meshsniff_records",
            "Records decoded (requests with their responses, or without).",
            table.records(),
        ),
        (
            "meshsniff_skipped_bytes",
            "Bytes skipped inside decoded protocols while resynchronising.",
            agent.skipped_bytes,
        ),
        (
            "meshsniff_other_bytes",
            "Bytes of connections in protocols not decoded (TLS, unknown).",
            agent.other_bytes,
        ),
        (
            "meshsniff_series_refused",
            "Records counted in an `other` series because --max-series was reached.",
            table.refused(),
        ),
    ];
    for (name, help, value) in counters {
        encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    let mut family = encoder.encode_descriptor(
        "meshsniff_flows_evicted",
        "Flows the tracker evicted, by cause.",
        None,
        MetricType::Counter,
    )?;
    for (cause, n) in [
        ("idle", agent.evicted_idle),
        ("max_flows", agent.evicted_max_flows),
        ("budget", agent.evicted_budget),
    ] {
        family
            .encode_family(&[("cause", cause)])?
            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    for (name, help, value) in [
        (
            "meshsniff_flows_open",
            "Flows the tracker holds.",
            agent.flows_open as i64,
        ),
        (
            "meshsniff_series",
            "Series (protocol, server, endpoint) held.",
            table.len() as i64,
        ),
        (
            "meshsniff_interface_up",
            "1 while the captured interface is up.",
            i64::from(agent.interface_up),
        ),
    ] {
        encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?
            .encode_gauge(&value)?;
    }
    Ok(())
}
