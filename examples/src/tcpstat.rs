//! Rendering tcpstat's counts: node_exporter's exposition (encoded by `prometheus-client`), or
//! one JSON object.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tcpwire::QueueSemantics;

use crate::exposition::{Format, prometheus_text};
use crate::tcpsource::Collected;

/// node_exporter's metric family, name and help text exactly as node_exporter exposes them.
pub const METRIC: &str = "node_tcp_connection_states";
const HELP: &str = "Number of connection states.";

/// The exposition of `c` in `format`: node_exporter's family (same name, HELP, TYPE, labels, and
/// samples in the same order, with the same values), then state codes node_exporter has no label
/// for in a family of their own (never in a known state), and the malformed-row count.
///
/// Values are written as integers (`7725815`, where node_exporter's Go client writes
/// `7.725815e+06`): the same numbers to any parser.
pub fn render_metrics(c: &Collected, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(CountsCollector(c.clone())));
    let mut text = String::new();
    // Writing into a String cannot fail, and no value is out of a gauge's range (saturated).
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    match format {
        Format::OpenMetrics => text,
        Format::Prometheus => prometheus_text(&text),
    }
}

/// One collection, encoded at once.
#[derive(Debug)]
struct CountsCollector(Collected);

/// A count as a gauge value (saturating: prometheus-client's integer gauges are `i64`).
fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for CountsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let mut family = encoder.encode_descriptor(METRIC, HELP, None, MetricType::Gauge)?;
        for (label, value) in c
            .counts
            .node_exporter_states(QueueSemantics::NodeExporter, false)
        {
            family
                .encode_family(&[("state", label)])?
                .encode_gauge(&gauge(value))?;
        }
        let unknown: Vec<_> = c.counts.unknown_states().collect();
        if !unknown.is_empty() {
            let mut family = encoder.encode_descriptor(
                "tcpwire_unknown_state_connections",
                "Sockets in a state code node_exporter has no label for.",
                None,
                MetricType::Gauge,
            )?;
            for (state, n) in unknown {
                // `TcpState`'s Display: two hex digits, nothing to escape.
                let code = state.to_string();
                family
                    .encode_family(&[("code", code.as_str())])?
                    .encode_gauge(&gauge(n))?;
            }
        }
        encoder
            .encode_descriptor(
                "tcpwire_malformed_rows",
                "Lines of the socket tables that were not valid rows.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&gauge(c.malformed_rows))
    }
}

/// `{"rows", "states", "rx_queued_bytes", "tx_queued_bytes", "unknown_states", "malformed_rows"}`;
/// states present only, numbers as integers.
pub fn render_json(c: &Collected) -> String {
    let semantics = QueueSemantics::NodeExporter;
    let states: Vec<String> = c
        .counts
        .states()
        .filter_map(|(s, n)| Some(format!("\"{}\": {n}", s.node_exporter_label()?)))
        .collect();
    let unknown: Vec<String> = c
        .counts
        .unknown_states()
        .map(|(s, n)| format!("\"{s}\": {n}"))
        .collect();
    format!(
        "{{\"rows\": {}, \"states\": {{{}}}, \"rx_queued_bytes\": {}, \"tx_queued_bytes\": {}, \"unknown_states\": {{{}}}, \"malformed_rows\": {}}}\n",
        c.counts.rows,
        states.join(", "),
        c.counts.rx_queued_bytes(semantics),
        c.counts.tx_queued_bytes(semantics),
        unknown.join(", "),
        c.malformed_rows
    )
}
