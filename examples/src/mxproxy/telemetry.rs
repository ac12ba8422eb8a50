//! Istio's TCP metrics (`istio_tcp_*`, peerx spec §5) and the exchange's own counters, and the
//! per-connection meter that reports them with Istio's timing: `opened` once the peer is known
//! (or at close), bytes as deltas on every reporting tick and at close, `closed` at close.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Role;
use super::tls::spiffe_namespace;
use crate::exposition::Escaped;

const UNKNOWN: &str = "unknown";

/// The longest label value taken from a peer by default: Istio's values are Kubernetes names,
/// namespaces, versions and cluster ids, at most 253 bytes (a DNS subdomain; most are 63).
pub const MAX_LABEL_VALUE_BYTES: usize = 253;

/// A label value, written with the exposition format's escapes (`\\`, `\"`, `\n`):
/// `prometheus-client` writes values as given, and these come from peers, who could otherwise
/// end a sample line and write their own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelValue(pub String);

impl LabelValue {
    /// The value, unescaped.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for LabelValue {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        Escaped(&self.0).encode(encoder)
    }
}

/// `value` cut to at most `max` bytes (at a character boundary), and whether it was cut.
fn bounded(value: &str, max: usize) -> (String, bool) {
    if value.len() <= max {
        return (value.to_owned(), false);
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    (value.get(..end).unwrap_or_default().to_owned(), true)
}

/// The label set of every `istio_tcp_*` series, named and ordered as Istio's stats plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
#[allow(missing_docs)]
pub struct TcpLabels {
    pub reporter: LabelValue,
    pub source_workload: LabelValue,
    pub source_canonical_service: LabelValue,
    pub source_canonical_revision: LabelValue,
    pub source_workload_namespace: LabelValue,
    pub source_principal: LabelValue,
    pub source_app: LabelValue,
    pub source_version: LabelValue,
    pub source_cluster: LabelValue,
    pub destination_workload: LabelValue,
    pub destination_workload_namespace: LabelValue,
    pub destination_principal: LabelValue,
    pub destination_app: LabelValue,
    pub destination_version: LabelValue,
    pub destination_service: LabelValue,
    pub destination_canonical_service: LabelValue,
    pub destination_canonical_revision: LabelValue,
    pub destination_service_name: LabelValue,
    pub destination_service_namespace: LabelValue,
    pub destination_cluster: LabelValue,
    pub request_protocol: LabelValue,
    pub response_flags: LabelValue,
    pub connection_security_policy: LabelValue,
}

/// One end's labels, as Istio fills them: `unknown` for what is missing, `latest` for a missing
/// canonical revision, the SPIFFE namespace over the claimed one. Every value is at most a bound
/// long (see [`WorkloadLabels::from_workload`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadLabels {
    workload: String,
    namespace: String,
    canonical_service: String,
    canonical_revision: String,
    app: String,
    version: String,
    cluster: String,
    principal: String,
    /// How many values were cut to the bound.
    cut: usize,
}

impl WorkloadLabels {
    /// From a workload view (ours, or the peer's frame) and the certificate identity, each value
    /// cut to at most `max_value_bytes` bytes (at a character boundary): values come from the
    /// peer, and a peer sending 20 KB names would otherwise make every series (and every scrape)
    /// that large. [`WorkloadLabels::values_cut`] tells how many were cut.
    pub fn from_workload(
        w: &peerx::Workload<'_>,
        principal: Option<&str>,
        max_value_bytes: usize,
    ) -> Self {
        let mut cut = 0;
        let mut take = |s: &str, missing: &str| {
            let (value, was_cut) = bounded(if s.is_empty() { missing } else { s }, max_value_bytes);
            cut += usize::from(was_cut);
            value
        };
        let namespace = principal.and_then(spiffe_namespace).unwrap_or(w.namespace);
        let mut labels = Self {
            workload: take(w.workload_name, UNKNOWN),
            namespace: take(namespace, UNKNOWN),
            canonical_service: take(w.canonical_name, UNKNOWN),
            canonical_revision: take(w.canonical_revision, "latest"),
            app: take(w.app_name, UNKNOWN),
            version: take(w.app_version, UNKNOWN),
            cluster: take(w.cluster, UNKNOWN),
            principal: take(principal.unwrap_or_default(), UNKNOWN),
            cut: 0,
        };
        labels.cut = cut;
        labels
    }

    /// From a frame's metadata (ours, or the peer's), which may name no workload.
    pub fn from_metadata(
        metadata: &peerx::PeerMetadata<'_>,
        principal: Option<&str>,
        max_value_bytes: usize,
    ) -> Self {
        match metadata.workload() {
            Some(workload) => Self::from_workload(&workload, principal, max_value_bytes),
            None => Self::unknown(principal, max_value_bytes),
        }
    }

    /// A peer that sent no metadata: only what its certificate says, if anything.
    pub fn unknown(principal: Option<&str>, max_value_bytes: usize) -> Self {
        let empty = peerx::Workload::from_struct(peerx::StructView::empty());
        Self::from_workload(&empty, principal, max_value_bytes)
    }

    /// How many of the values were longer than the bound and cut.
    pub fn values_cut(&self) -> usize {
        self.cut
    }
}

/// How a connection went, beyond the peer: Envoy's response flags (`-` for none, `UF` for an
/// upstream connection failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFlags {
    /// Nothing to report.
    None,
    /// The upstream could not be reached.
    UpstreamConnectFailure,
}

/// The labels of one connection seen from `role`, with `own` our workload and `peer` the other.
pub fn tcp_labels(
    role: Role,
    own: &WorkloadLabels,
    peer: &WorkloadLabels,
    security_policy: &str,
    flags: ResponseFlags,
) -> TcpLabels {
    let (reporter, source, destination) = match role {
        Role::Client => ("source", own, peer),
        Role::Server => ("destination", peer, own),
    };
    let service_known =
        destination.canonical_service != UNKNOWN && destination.namespace != UNKNOWN;
    let v = |s: &str| LabelValue(s.to_owned());
    TcpLabels {
        reporter: v(reporter),
        source_workload: v(&source.workload),
        source_canonical_service: v(&source.canonical_service),
        source_canonical_revision: v(&source.canonical_revision),
        source_workload_namespace: v(&source.namespace),
        source_principal: v(&source.principal),
        source_app: v(&source.app),
        source_version: v(&source.version),
        source_cluster: v(&source.cluster),
        destination_workload: v(&destination.workload),
        destination_workload_namespace: v(&destination.namespace),
        destination_principal: v(&destination.principal),
        destination_app: v(&destination.app),
        destination_version: v(&destination.version),
        destination_service: if service_known {
            LabelValue(format!(
                "{}.{}.svc.cluster.local",
                destination.canonical_service, destination.namespace
            ))
        } else {
            v(UNKNOWN)
        },
        destination_canonical_service: v(&destination.canonical_service),
        destination_canonical_revision: v(&destination.canonical_revision),
        destination_service_name: v(&destination.canonical_service),
        destination_service_namespace: v(&destination.namespace),
        destination_cluster: v(&destination.cluster),
        request_protocol: v("tcp"),
        response_flags: v(match flags {
            ResponseFlags::None => "-",
            ResponseFlags::UpstreamConnectFailure => "UF",
        }),
        connection_security_policy: v(security_policy),
    }
}

/// The exchange's counters summed over connections, named as Envoy's `metadata_exchange.*`.
#[derive(Debug, Default)]
struct ExchangeCounters {
    alpn_protocol_found: Counter,
    alpn_protocol_not_found: Counter,
    initial_header_not_found: Counter,
    header_not_found: Counter,
    metadata_added: Counter,
    peer_frames: Counter,
}

/// Everything mxproxy exports on `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    opened: Family<TcpLabels, Counter>,
    closed: Family<TcpLabels, Counter>,
    sent: Family<TcpLabels, Counter>,
    received: Family<TcpLabels, Counter>,
    exchange: ExchangeCounters,
    upstream_connect_failures: Counter,
    handshake_failures: Counter,
    identity_rejections: Counter,
    max_label_sets: usize,
    /// Label sets admitted from peers' metadata so far.
    peer_label_sets: AtomicUsize,
    label_sets_refused: Counter,
    max_label_value_bytes: usize,
    label_values_cut: Counter,
    idle_timeouts: Counter,
    connections_refused: Counter,
}

impl Metrics {
    /// A registry holding every family, empty (help texts without a final period: the encoder
    /// adds one); peers may create at most `max_label_sets` label sets (see [`Metrics::admit`]),
    /// each value at most `max_label_value_bytes` long (see [`Metrics::peer_labels`]).
    pub fn new(max_label_sets: usize, max_label_value_bytes: usize) -> Arc<Self> {
        let mut registry = Registry::default();
        let families: [(&str, &str, Family<TcpLabels, Counter>); 4] = [
            (
                "istio_tcp_connections_opened",
                "Connections opened",
                Family::default(),
            ),
            (
                "istio_tcp_connections_closed",
                "Connections closed",
                Family::default(),
            ),
            (
                "istio_tcp_sent_bytes",
                "Bytes sent to the downstream peer",
                Family::default(),
            ),
            (
                "istio_tcp_received_bytes",
                "Bytes received from the downstream peer",
                Family::default(),
            ),
        ];
        for (name, help, family) in &families {
            registry.register(*name, *help, family.clone());
        }
        let [opened, closed, sent, received] = families.map(|(_, _, family)| family);

        let exchange = ExchangeCounters::default();
        let mx = registry.sub_registry_with_prefix("metadata_exchange");
        for (name, help, counter) in [
            (
                "alpn_protocol_found",
                "The negotiated ALPN was the exchange's",
                &exchange.alpn_protocol_found,
            ),
            (
                "alpn_protocol_not_found",
                "The negotiated ALPN was not the exchange's",
                &exchange.alpn_protocol_not_found,
            ),
            (
                "initial_header_not_found",
                "No frame header where one was expected",
                &exchange.initial_header_not_found,
            ),
            (
                "header_not_found",
                "A frame header whose payload was unusable or never completed",
                &exchange.header_not_found,
            ),
            (
                "metadata_added",
                "Our frame was written",
                &exchange.metadata_added,
            ),
            ("peer_frames", "Peer frames read", &exchange.peer_frames),
        ] {
            mx.register(name, help, counter.clone());
        }
        let upstream_connect_failures = Counter::default();
        let handshake_failures = Counter::default();
        let identity_rejections = Counter::default();
        let label_sets_refused = Counter::default();
        let label_values_cut = Counter::default();
        let idle_timeouts = Counter::default();
        let connections_refused = Counter::default();
        let proxy = registry.sub_registry_with_prefix("mxproxy");
        proxy.register(
            "upstream_connect_failures",
            "Upstream connections that could not be opened",
            upstream_connect_failures.clone(),
        );
        proxy.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            handshake_failures.clone(),
        );
        proxy.register(
            "peer_identity_rejections",
            "Peers whose certificate carried none of the expected SPIFFE identities",
            identity_rejections.clone(),
        );
        proxy.register(
            "label_sets_refused",
            "Connections reported as from an unknown peer because its labels would pass the cap",
            label_sets_refused.clone(),
        );
        proxy.register(
            "label_values_cut",
            "Label values from metadata or certificates cut to the length bound",
            label_values_cut.clone(),
        );
        proxy.register(
            "idle_timeouts",
            "Connections closed after moving no byte for the idle timeout",
            idle_timeouts.clone(),
        );
        proxy.register(
            "connections_refused",
            "Connections closed at once because the most connections were open",
            connections_refused.clone(),
        );
        Arc::new(Self {
            registry,
            opened,
            closed,
            sent,
            received,
            exchange,
            upstream_connect_failures,
            handshake_failures,
            identity_rejections,
            max_label_sets,
            peer_label_sets: AtomicUsize::new(0),
            label_sets_refused,
            max_label_value_bytes,
            label_values_cut,
            idle_timeouts,
            connections_refused,
        })
    }

    /// The OpenMetrics text exposition Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Adds what an exchange counted since `before`.
    pub(crate) fn add_exchange(&self, before: peerx::Stats, now: peerx::Stats) {
        let c = &self.exchange;
        let add = |counter: &Counter, old: u64, new: u64| {
            counter.inc_by(new.saturating_sub(old));
        };
        add(
            &c.alpn_protocol_found,
            before.alpn_protocol_found,
            now.alpn_protocol_found,
        );
        add(
            &c.alpn_protocol_not_found,
            before.alpn_protocol_not_found,
            now.alpn_protocol_not_found,
        );
        add(
            &c.initial_header_not_found,
            before.initial_header_not_found,
            now.initial_header_not_found,
        );
        add(
            &c.header_not_found,
            before.header_not_found,
            now.header_not_found,
        );
        add(&c.metadata_added, before.metadata_added, now.metadata_added);
        add(&c.peer_frames, before.peer_frames, now.peer_frames);
    }

    pub(crate) fn upstream_connect_failed(&self) {
        self.upstream_connect_failures.inc();
    }

    pub(crate) fn handshake_failed(&self) {
        self.handshake_failures.inc();
    }

    /// `labels` when they are already known or there is room for a new set, else `fallback()`
    /// (always admitted: its values do not come from the peer's metadata).
    pub fn admit(&self, labels: TcpLabels, fallback: impl FnOnce() -> TcpLabels) -> TcpLabels {
        if self.opened.get(&labels).is_some() {
            return labels;
        }
        // Two connections bringing the same new set at once both take a place: the count errs
        // towards refusing early, never towards passing the cap.
        let room = self
            .peer_label_sets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_label_sets).then_some(n + 1)
            })
            .is_ok();
        if room {
            labels
        } else {
            self.label_sets_refused.inc();
            fallback()
        }
    }

    pub(crate) fn identity_rejected(&self) {
        self.identity_rejections.inc();
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub(crate) fn idle_timed_out(&self) {
        self.idle_timeouts.inc();
    }

    /// The labels of a workload (a peer's, from its frame, or ours), each value bounded; the
    /// values cut are counted.
    pub fn peer_labels(
        &self,
        metadata: Option<&peerx::PeerMetadata<'_>>,
        principal: Option<&str>,
    ) -> WorkloadLabels {
        let labels = match metadata {
            Some(metadata) => {
                WorkloadLabels::from_metadata(metadata, principal, self.max_label_value_bytes)
            }
            None => WorkloadLabels::unknown(principal, self.max_label_value_bytes),
        };
        self.label_values_cut.inc_by(labels.values_cut() as u64);
        labels
    }
}

/// Which Istio byte counter a direction of the proxy feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Downstream {
    /// Bytes that came from the downstream peer.
    Received,
    /// Bytes that went to the downstream peer.
    Sent,
}

#[derive(Debug, Default)]
struct Reported {
    labels: Option<TcpLabels>,
    received: u64,
    sent: u64,
}

/// One connection's byte totals and what of them has been reported.
#[derive(Debug)]
pub(crate) struct ConnMeter {
    metrics: Arc<Metrics>,
    received: AtomicU64,
    sent: AtomicU64,
    reported: Mutex<Reported>,
}

impl ConnMeter {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            reported: Mutex::new(Reported::default()),
        }
    }

    pub(crate) fn count(&self, direction: Downstream, bytes: usize) {
        let total = match direction {
            Downstream::Received => &self.received,
            Downstream::Sent => &self.sent,
        };
        total.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The peer is known (or known to be unknown): `opened` is counted now, once. `labels` is
    /// only called the first time, so a connection already labelled builds (and, through
    /// [`Metrics::admit`], charges the label-set cap for) nothing more.
    pub(crate) fn resolve(&self, labels: impl FnOnce() -> TcpLabels) {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        if reported.labels.is_none() {
            let labels = labels();
            self.metrics.opened.get_or_create(&labels).inc();
            reported.labels = Some(labels);
        }
        self.flush_locked(&mut reported);
    }

    /// Reports the bytes moved since the last report, once the peer is known.
    pub(crate) fn flush(&self) {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        self.flush_locked(&mut reported);
    }

    fn flush_locked(&self, reported: &mut Reported) {
        let Some(labels) = &reported.labels else {
            return;
        };
        let received = self.received.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        self.metrics
            .received
            .get_or_create(labels)
            .inc_by(received - reported.received);
        self.metrics
            .sent
            .get_or_create(labels)
            .inc_by(sent - reported.sent);
        reported.received = received;
        reported.sent = sent;
    }

    /// The connection ended: resolves with `fallback` if the peer never became known, reports
    /// the last bytes and counts `closed`.
    pub(crate) fn close(&self, fallback: impl FnOnce() -> TcpLabels) {
        self.resolve(fallback);
        let reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(labels) = &reported.labels {
            self.metrics.closed.get_or_create(labels).inc();
        }
    }
}
