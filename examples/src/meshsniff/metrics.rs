//! `meshsniff --listen`: the per-endpoint series and the agent's own counters as a Prometheus
//! exposition, encoded by `prometheus-client` from one shared state at scrape time.
//!
//! The capture thread writes the state (records as they complete, the agent's counters once per
//! ring block) and the HTTP server reads it under the same lock; nothing is copied between
//! scrapes.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::endpoint::Outcome;
use super::series::SeriesTable;

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

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (no exemplars).
    Prometheus,
    /// OpenMetrics 1.0 text, with exemplars.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text`, else Prometheus text.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

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

/// Prometheus text 0.0.4 from OpenMetrics text: no `# EOF` or `# UNIT`, no exemplars, and a
/// counter's `# HELP`/`# TYPE` name its `_total` samples as 0.0.4 expects.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name);
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                let _ = writeln!(out, "# {kind} {name}_total {tail}");
                continue;
            }
        }
        out.push_str(without_exemplar(line));
        out.push('\n');
    }
    out
}

/// A sample line without its exemplar (` # {…} value`), found after the label set, whose values
/// may themselves hold ` # `.
fn without_exemplar(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut at = 0;
    if let Some(open) = line.find('{')
        && line.find(' ').is_none_or(|space| open < space)
    {
        // Skip the label set: quoted values with backslash escapes.
        let (mut i, mut quoted) = (open + 1, false);
        while let Some(&b) = bytes.get(i) {
            match b {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'}' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        at = i;
    }
    match line.get(at..).and_then(|rest| rest.find(" # ")) {
        Some(cut) => &line[..at + cut],
        None => line,
    }
}

/// A label value written with the exposition format's escapes (`prometheus-client` writes
/// values as given, and endpoints come from the wire).
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut rest = self.0;
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure
    use super::*;

    #[test]
    fn exemplars_are_cut_after_the_labels() {
        assert_eq!(
            without_exemplar(r#"a_bucket{e="x # {y}",le="0.1"} 3 # {trace_id="ab"} 0.05"#),
            r#"a_bucket{e="x # {y}",le="0.1"} 3"#
        );
        assert_eq!(
            without_exemplar(r#"a_bucket{e="q\" # }",le="1"} 3"#),
            r#"a_bucket{e="q\" # }",le="1"} 3"#
        );
        assert_eq!(without_exemplar("a_total 3"), "a_total 3");
    }

    #[test]
    fn prometheus_text_names_counters_by_their_samples() {
        let om = "# HELP a Things.\n# TYPE a counter\na_total 1\n# HELP g G.\n# TYPE g gauge\ng 2\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP a_total Things.\n# TYPE a_total counter\na_total 1\n# HELP g G.\n# TYPE g gauge\ng 2\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        #[derive(Debug)]
        struct One;
        impl Collector for One {
            fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
                encoder
                    .encode_descriptor("x", "h", None, MetricType::Counter)?
                    .encode_family(&[("e", Escaped("GET /a\"b\\c\nd"))])?
                    .encode_counter::<NoLabelSet, _, u64>(&1u64, None)
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(One));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"x_total{e="GET /a\"b\\c\nd"} 1"#), "{text}");
    }

    #[test]
    fn accept_headers() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
