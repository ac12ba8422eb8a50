//! `meshsniff --interface`: the capture loop of a monitoring agent. Packets from the live ring go
//! through the same [`Pipeline`] as a file's; each record is counted in the shared per-endpoint
//! series (what `/metrics` and the final table read) and handed to the caller; the agent's own
//! counters are published once per ring block.
//!
//! Time is the packets' (kernel timestamps): latencies never include the ring's delivery delay.
//! While no packet arrives, the clock follows the wall clock less [`CLOCK_LAG`], so idle flows
//! are still evicted and unanswered requests still reported.

use std::cell::Cell;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use l7decode::Timestamp;
use l7decode::flows::{FlowLimits, FlowStats};

use super::metrics::{AgentCounters, SharedState};
use super::{Pipeline, Record, Totals};
use crate::capture::live::{KernelStats, LiveCapture, LiveError, LiveStats};

/// How far the idle clock stays behind the wall clock: more than the ring's delivery delay
/// (its block retire timeout), so a packet still in the ring is never older than the clock.
pub const CLOCK_LAG: Duration = Duration::from_secs(1);

/// Longest wait for a ring block, so a stop request or the deadline is seen within it.
const POLL: Duration = Duration::from_millis(100);

/// How often the kernel's counters are read.
const KERNEL_STATS_EVERY: Duration = Duration::from_secs(1);

/// When the loop stops.
#[derive(Debug, Clone, Copy)]
pub struct StopWhen<'a> {
    /// Set by a signal handler (SIGINT, SIGTERM).
    pub signalled: &'a AtomicBool,
    /// `--duration`.
    pub deadline: Option<Instant>,
}

/// What a live run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveSummary {
    /// The pipeline's totals (after every flow was ended).
    pub totals: Totals,
    /// The ring's counters.
    pub capture: LiveStats,
    /// The kernel's counters.
    pub kernel: KernelStats,
    /// The flow tracker's counters (how every flow ended).
    pub flows: FlowStats,
}

/// What the caller does with a record after it was counted: keep going, or stop the capture
/// (its output is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep capturing.
    Continue,
    /// Stop: flush and return.
    Stop,
}

/// Captures until `stop`, then ends every flow (their pending records are reported) and
/// returns the summary, with the error that ended the capture early, if any.
pub fn run(
    capture: &mut LiveCapture,
    limits: FlowLimits,
    state: &SharedState,
    stop: StopWhen<'_>,
    mut on_record: impl FnMut(&Record) -> Next,
) -> (LiveSummary, Option<LiveError>) {
    let mut pipeline = Pipeline::new(limits);
    let output_gone = Cell::new(false);
    let mut count = |record: Record| {
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .series
            .add(&record);
        if !output_gone.get() && on_record(&record) == Next::Stop {
            output_gone.set(true);
        }
    };
    let mut kernel = KernelStats::default();
    let mut kernel_read = Instant::now();
    let mut failure = None;
    let mut was_up = true;
    loop {
        if stop.signalled.load(Ordering::Relaxed)
            || stop.deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        match capture.next_block(POLL, |packet| pipeline.packet(&packet, &mut count)) {
            Ok(0) => pipeline.advance(idle_clock(), &mut count),
            Ok(_) => {}
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if kernel_read.elapsed() >= KERNEL_STATS_EVERY {
            kernel_read = Instant::now();
            match capture.kernel_stats() {
                Ok(k) => kernel = k,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let up = capture.is_up();
        if up != was_up {
            eprintln!(
                "meshsniff: {} is {}",
                capture.interface(),
                if up {
                    "up again"
                } else {
                    "down; waiting for it"
                }
            );
            was_up = up;
        }
        publish(state, &pipeline, capture.stats(), kernel, up);
        if output_gone.get() {
            break;
        }
    }
    if let Ok(k) = capture.kernel_stats() {
        kernel = k;
    }
    let totals = pipeline.finish(&mut count);
    publish(state, &pipeline, capture.stats(), kernel, capture.is_up());
    let summary = LiveSummary {
        totals,
        capture: capture.stats(),
        kernel,
        flows: pipeline.flow_stats(),
    };
    (summary, failure)
}

/// The wall clock less [`CLOCK_LAG`], as a capture timestamp.
fn idle_clock() -> Timestamp {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(CLOCK_LAG);
    Timestamp(u64::try_from(now.as_nanos()).unwrap_or(u64::MAX))
}

fn publish(
    state: &SharedState,
    pipeline: &Pipeline,
    capture: LiveStats,
    kernel: KernelStats,
    up: bool,
) {
    let flows = pipeline.flow_stats();
    let totals = pipeline.totals();
    state.lock().unwrap_or_else(PoisonError::into_inner).agent = AgentCounters {
        capture_packets: capture.packets,
        capture_bytes: capture.bytes,
        capture_drops: kernel.drops,
        flows_open: flows.flows_open as u64,
        evicted_idle: flows.evicted_idle,
        evicted_max_flows: flows.evicted_max_flows,
        evicted_budget: flows.evicted_budget,
        skipped_bytes: totals.skipped_bytes,
        other_bytes: totals.other_bytes,
        interface_up: up,
    };
}
