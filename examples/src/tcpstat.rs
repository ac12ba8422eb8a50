//! Rendering tcpstat's counts: node_exporter's exposition, or one JSON object.

use std::fmt::Write;

use tcpwire::QueueSemantics;

use crate::prom;
use crate::tcpsource::Collected;

/// node_exporter's metric family, name and help text exactly as node_exporter exposes them.
pub const METRIC: &str = "node_tcp_connection_states";
const HELP: &str = "Number of connection states.";

/// Prometheus text exposition: node_exporter's family (same names, labels, HELP, TYPE, value
/// formatting), then state codes node_exporter has no label for in a family of their own, never
/// in a known state, and the malformed-row count.
pub fn render_prom(c: &Collected) -> String {
    let mut out = String::new();
    prom::family_header(&mut out, METRIC, HELP, "gauge");
    for (label, value) in c
        .counts
        .node_exporter_states(QueueSemantics::NodeExporter, false)
    {
        prom::sample(&mut out, METRIC, ("state", label), value as f64);
    }
    let unknown: Vec<_> = c.counts.unknown_states().collect();
    if !unknown.is_empty() {
        let name = "tcpwire_unknown_state_connections";
        prom::family_header(
            &mut out,
            name,
            "Sockets in a state code node_exporter has no label for.",
            "gauge",
        );
        for (state, n) in unknown {
            prom::sample(&mut out, name, ("code", &state.to_string()), n as f64);
        }
    }
    let name = "tcpwire_malformed_rows";
    prom::family_header(
        &mut out,
        name,
        "Lines of the socket tables that were not valid rows.",
        "gauge",
    );
    let _ = writeln!(out, "{name} {}", prom::go_float(c.malformed_rows as f64));
    out
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
