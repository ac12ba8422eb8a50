//! Interleaved A/B timing. These machines are noisy, so the two sides alternate sample by sample
//! and the median of each is compared; only the ratio is meant to be read.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// One measured comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Case name.
    pub case: String,
    /// What the anchor is.
    pub anchor: String,
    /// Median time of one run of our code.
    pub ours: Duration,
    /// Median time of one run of the anchor.
    pub theirs: Duration,
    /// Bytes of input per run, for throughput.
    pub bytes: u64,
    /// Samples per side.
    pub samples: usize,
}

impl Comparison {
    /// `theirs / ours`: how many times faster we are (above 1) or slower (below 1).
    pub fn speedup(&self) -> f64 {
        self.theirs.as_secs_f64() / self.ours.as_secs_f64().max(1e-12)
    }

    /// Our throughput in MiB/s.
    pub fn ours_mib_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.ours.as_secs_f64().max(1e-12)
    }

    /// One JSON object (no dependency needed for this flat shape).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"case\":{:?},\"anchor\":{:?},\"ours_ns\":{},\"theirs_ns\":{},\"ratio\":{:.3},\"bytes\":{},\"samples\":{}}}",
            self.case,
            self.anchor,
            self.ours.as_nanos(),
            self.theirs.as_nanos(),
            self.speedup(),
            self.bytes,
            self.samples
        )
    }
}

/// Runs `ours` and `theirs` alternately `samples` times each (after one warm-up each) and
/// returns their medians. Each closure returns a value that is fed to `black_box`, and both must
/// agree on `check` (the same answer), so a comparison can never time two different jobs.
pub fn compare<T: PartialEq + std::fmt::Debug>(
    case: &str,
    anchor: &str,
    bytes: u64,
    samples: usize,
    mut ours: impl FnMut() -> T,
    mut theirs: impl FnMut() -> T,
) -> Comparison {
    let a = ours();
    let b = theirs();
    assert_eq!(a, b, "{case}: ours and the anchor disagree");
    let mut ours_t = Vec::with_capacity(samples);
    let mut theirs_t = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        black_box(ours());
        ours_t.push(start.elapsed());
        let start = Instant::now();
        black_box(theirs());
        theirs_t.push(start.elapsed());
    }
    Comparison {
        case: case.to_owned(),
        anchor: anchor.to_owned(),
        ours: median(&mut ours_t),
        theirs: median(&mut theirs_t),
        bytes,
        samples,
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// The human table.
pub fn table(rows: &[Comparison]) -> String {
    let mut out = format!(
        "{:<44} {:<34} {:>12} {:>12} {:>8} {:>10}\n",
        "case", "anchor", "ours", "anchor", "ratio", "ours MiB/s"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<44} {:<34} {:>12} {:>12} {:>7.2}x {:>10.1}\n",
            r.case,
            r.anchor,
            fmt_duration(r.ours),
            fmt_duration(r.theirs),
            r.speedup(),
            r.ours_mib_s()
        ));
    }
    out
}

fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

/// The median time of `runs` calls of `f` (at least 5).
pub fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs.max(5))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// tshark (when installed) on a capture file: how many values of `field` the packets matching
/// it carry. `None` when tshark cannot be run.
pub fn tshark_count(path: &std::path::Path, field: &str) -> Option<u64> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-Y", field, "-T", "fields", "-e", field])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split(',').count() as u64)
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_anchor_over_ours() {
        let c = Comparison {
            case: "c".into(),
            anchor: "a".into(),
            ours: Duration::from_millis(2),
            theirs: Duration::from_millis(10),
            bytes: 1024 * 1024,
            samples: 1,
        };
        assert!((c.speedup() - 5.0).abs() < 1e-9);
        assert!(c.to_json().contains("\"ratio\":5.000"));
        assert!(table(&[c]).contains("5.00x"));
    }

    #[test]
    #[should_panic(expected = "disagree")]
    fn disagreeing_sides_are_refused() {
        compare("c", "a", 1, 1, || 1, || 2);
    }
}
