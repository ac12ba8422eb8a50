//! What every exporter of the programs shares about the Prometheus exposition: the format a
//! scraper asks for, Prometheus text 0.0.4 made from `prometheus-client`'s OpenMetrics text, and
//! label values escaped (`prometheus-client` writes them as given, and the programs' values come
//! from the wire or from peers, who could otherwise end a sample line and write their own).

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
    use prometheus_client::metrics::MetricType;
    use prometheus_client::registry::Registry;

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
