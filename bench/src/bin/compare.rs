//! `compare [--only tcpwire|peerx|tracectx|l7decode|mysql|mongo|flows] [--rows N] [--samples N] [--json] [--no-live]`: side-by-side
//! runs against the anchors.
//! `compare peak-rss count|typed|procfs FILE`: reads FILE with one reader and prints peak RSS.
//! `compare flows-profile tracker|legacy [RUNS]`: the synthetic flows capture through one side
//! only, for a profiler.

use std::path::PathBuf;

use bench::{
    flows_cases, harness, l7decode_cases, mongo_cases, mysql_cases, peerx_cases, tcpwire_cases,
    tracectx_cases,
};

// Counts allocations per operation for the tracectx comparison and heap bytes for the flows
// case (otherwise just `System`).
#[global_allocator]
static ALLOCATOR: bench::alloc_count::CountingAlloc = bench::alloc_count::CountingAlloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("peak-rss") {
        let (Some(how), Some(file)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: compare peak-rss count|count-mem|typed|procfs FILE");
            std::process::exit(2);
        };
        let file = PathBuf::from(file);
        let tally = match how.as_str() {
            "count" => tcpwire_cases::count_file(&file).1,
            // In memory, ten times over: for profiling the parser without the file reads.
            "count-mem" => {
                let data = std::fs::read(&file).expect("read table");
                let mut tally = Vec::new();
                for _ in 0..10 {
                    tally = tcpwire_cases::count(&data);
                }
                tally
            }
            "typed" => tcpwire_cases::typed_file(&file),
            "procfs" => tcpwire_cases::procfs_file(&file),
            other => {
                eprintln!("unknown reader {other:?}");
                std::process::exit(2);
            }
        };
        let rows: u64 = tally.iter().map(|(_, n)| n).sum();
        println!(
            "{how}: rows {rows} peak_rss_kib {}",
            peak_rss_kib().unwrap_or(0)
        );
        return;
    }
    if args.first().map(String::as_str) == Some("flows-profile") {
        let side = args.get(1).map_or("tracker", String::as_str);
        let runs = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3);
        println!("{side}: {} records", flows_cases::profile(side, runs));
        return;
    }
    let value = |flag: &str| -> Option<u64> {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1)?.parse().ok()
    };
    let rows = value("--rows").unwrap_or(1_000_000);
    let samples = value("--samples").map_or(7, |n| n as usize);
    let json = args.iter().any(|a| a == "--json");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let mut results = Vec::new();
    if only.is_none_or(|o| o == "tcpwire") {
        results.extend(tcpwire_cases::run(&dir, rows, samples));
        if !args.iter().any(|a| a == "--no-live") {
            results.extend(tcpwire_cases::run_live(samples));
        }
    }
    if only.is_none_or(|o| o == "peerx") {
        results.extend(peerx_cases::run(samples));
    }
    let mut notes = Vec::new();
    if only.is_none_or(|o| o == "l7decode") {
        let (comparisons, l7_notes) = l7decode_cases::run(samples);
        results.extend(comparisons);
        notes.extend(l7_notes);
    }
    if only.is_none_or(|o| o == "mysql") {
        let (comparisons, mysql_notes) = mysql_cases::run(samples);
        results.extend(comparisons);
        notes.extend(mysql_notes);
    }
    if only.is_none_or(|o| o == "mongo") {
        let (comparisons, mongo_notes) = mongo_cases::run(samples);
        results.extend(comparisons);
        notes.extend(mongo_notes);
    }
    if only.is_none_or(|o| o == "flows") {
        let (comparisons, flows_notes) = flows_cases::run(samples);
        results.extend(comparisons);
        notes.extend(flows_notes);
    }
    if only.is_none_or(|o| o == "tracectx") {
        let (comparisons, allocations) = tracectx_cases::run(samples);
        results.extend(comparisons);
        notes.extend(allocations);
    }
    if json {
        let items: Vec<String> = results.iter().map(harness::Comparison::to_json).collect();
        println!("[{}]", items.join(",\n "));
    } else {
        print!("{}", harness::table(&results));
    }
    for note in notes {
        eprintln!("{note}");
    }
}

/// `VmHWM` of this process, in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
