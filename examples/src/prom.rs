//! Prometheus text exposition (format 0.0.4), written the way Go's client_golang writes it, so
//! output can be diffed against node_exporter's byte for byte.

use std::fmt::Write;

/// Formats a sample value as client_golang does (`strconv.FormatFloat(v, 'g', -1, 64)`): plain
/// digits while the decimal exponent is in -4..6, otherwise the shortest mantissa with a
/// two-digit signed exponent (`7.730151e+06`).
pub fn go_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    // Rust's `{:e}` prints the shortest round-tripping digits, as Go's -1 precision does.
    let sci = format!("{value:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go switches to %e when the exponent is below -4 or at least 6 (its shortest-precision rule).
    if (-4..6).contains(&exp) {
        return format!("{value}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Writes `# HELP` and `# TYPE` lines of a metric family.
pub fn family_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample with a single label.
pub fn sample(out: &mut String, name: &str, label: (&str, &str), value: f64) {
    let (key, val) = label;
    let _ = writeln!(
        out,
        "{name}{{{key}=\"{}\"}} {}",
        escape_label(val),
        go_float(value)
    );
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_go() {
        // Values taken from node_exporter 1.5.0 output and Go's strconv documentation.
        assert_eq!(go_float(67483.0), "67483");
        assert_eq!(go_float(7_730_151.0), "7.730151e+06");
        assert_eq!(go_float(999_999.0), "999999");
        assert_eq!(go_float(1_000_000.0), "1e+06");
        assert_eq!(go_float(28.0), "28");
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(123_456_789_012.0), "1.23456789012e+11");
    }
}
