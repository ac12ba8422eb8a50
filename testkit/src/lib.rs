//! Dev-only helpers shared by the tests of every crate in the family.
//!
//! Two habits live here so that every crate follows them the same way:
//!
//! * [`assert_chunking_invariant`]: a streaming decoder must produce the same events whether its input
//!   arrives whole, one byte at a time, or split at arbitrary points.
//! * [`replay_corpus`]: the committed cargo-fuzz corpus is replayed by an ordinary `cargo test`, so CI
//!   exercises every fuzz target's property checks on stable Rust without libFuzzer.
//!
//! And one tool: [`alloc_count`], the counting allocator behind every "allocates nothing" test
//! and the benches' allocations-per-call figures.
//!
//! This crate is `publish = false` and only ever a path dev-dependency (cargo drops those on publish),
//! so the library crates stay independent of each other.

pub mod alloc_count;

use core::fmt::Debug;
use std::path::{Path, PathBuf};

/// A small deterministic pseudo-random generator (SplitMix64), so split points are reproducible
/// from a seed printed in a failure message, without pulling an RNG crate into every test.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Starts the sequence at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound` must be non-zero).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

/// Splits `input` into consecutive chunks ending at the given sorted, deduplicated cut points.
pub fn split_at_points<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        let cut = cut.min(input.len());
        if cut > start {
            chunks.push(&input[start..cut]);
            start = cut;
        }
    }
    chunks.push(&input[start..]);
    chunks
}

/// Random cut points for `len` bytes: between one and `max_cuts` positions, sorted and unique.
pub fn random_cuts(len: usize, max_cuts: usize, rng: &mut SplitMix) -> Vec<usize> {
    if len < 2 {
        return Vec::new();
    }
    let n = 1 + rng.below(max_cuts.max(1));
    let mut cuts: Vec<usize> = (0..n).map(|_| 1 + rng.below(len - 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// The chunkings every streaming test goes through: the whole input, 1-byte chunks, and
/// `random_rounds` random splittings (seeded, so a failure names its seed).
pub fn chunkings(input: &[u8], random_rounds: u64) -> Vec<(String, Vec<&[u8]>)> {
    let mut all = vec![
        ("whole".to_owned(), vec![input]),
        ("1-byte".to_owned(), input.chunks(1).collect()),
    ];
    for seed in 0..random_rounds {
        let mut rng = SplitMix::new(seed);
        let cuts = random_cuts(input.len(), 64, &mut rng);
        all.push((format!("random seed {seed}"), split_at_points(input, &cuts)));
    }
    all
}

/// Feeds `input` to a fresh decoder in every chunking of [`chunkings`] and asserts that `run`
/// (which creates the decoder, feeds the chunks in order, finishes it and returns everything it
/// emitted) returns the same value each time. Returns that value for further assertions.
///
/// # Panics
/// When two chunkings disagree; the message names the chunking.
pub fn assert_chunking_invariant<E, F>(input: &[u8], random_rounds: u64, mut run: F) -> E
where
    E: Debug + PartialEq,
    F: FnMut(&[&[u8]]) -> E,
{
    let mut reference = None;
    for (name, chunks) in chunkings(input, random_rounds) {
        let got = run(&chunks);
        match &reference {
            None => reference = Some(got),
            Some(expected) => assert_eq!(
                expected, &got,
                "events differ between whole input and chunking `{name}`"
            ),
        }
    }
    reference.expect("chunkings always include the whole input")
}

/// The committed corpus directory of one fuzz target, `fuzz/corpus/<target>` at the repository root.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs `check` (the same function the fuzz target calls) over every file of a target's committed
/// corpus and returns how many inputs were replayed.
///
/// # Panics
/// When the corpus directory is missing or empty (a replay that checks nothing must fail), or when
/// `check` panics on an input.
pub fn replay_corpus(target: &str, check: impl Fn(&[u8])) -> usize {
    let dir = corpus_dir(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} unreadable: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "corpus {} is empty", dir.display());
    for path in &paths {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| check(&data)));
        if let Err(panic) = outcome {
            eprintln!("fuzz check failed on corpus file {}", path.display());
            std::panic::resume_unwind(panic);
        }
    }
    paths.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunkings_reassemble_to_the_input() {
        let input: Vec<u8> = (0..=255).collect();
        for (name, chunks) in chunkings(&input, 16) {
            assert_eq!(chunks.concat(), input, "{name}");
            assert!(chunks.iter().all(|c| !c.is_empty()), "{name}");
        }
    }

    #[test]
    #[should_panic(expected = "events differ")]
    fn a_chunking_sensitive_decoder_is_caught() {
        // Counts chunks rather than bytes: must be caught.
        assert_chunking_invariant(b"abcdef", 4, |chunks| chunks.len());
    }

    #[test]
    fn empty_input_has_one_empty_chunk() {
        assert_eq!(split_at_points(b"", &[]), vec![&b""[..]]);
    }
}

/// The outcome each bundled peerx vector must give, by its two-digit number, as the peerx CLI
/// names it; shared by the crate's tests and the CLI's.
pub fn peerx_vector_outcome(name: &str) -> &'static str {
    match name.get(..2).unwrap_or_default() {
        "01" | "02" | "03" | "04" | "06" | "08" | "19" | "21" | "22" => "peer",
        "05" | "07" => "no_peer",
        "09" | "10" => "incomplete",
        "11" | "12" | "13" => "not_exchange",
        _ => "malformed",
    }
}

/// Minimal readers for the flat truth files that ship with fixtures (`"key": 123` and
/// `"key": {"a": 1, "b": 2}`), so tests need no JSON dependency.
pub mod truth {
    /// The unsigned integer stored under `key` (the first occurrence).
    pub fn number(json: &str, key: &str) -> Option<u64> {
        let rest = after_key(json, key)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// The string stored under `key`.
    pub fn string(json: &str, key: &str) -> Option<String> {
        let rest = after_key(json, key)?.strip_prefix('"')?;
        Some(rest[..rest.find('"')?].to_owned())
    }

    /// The `{"name": number, ...}` object stored under `key`, in file order.
    pub fn numbers(json: &str, key: &str) -> Option<Vec<(String, u64)>> {
        let rest = after_key(json, key)?.strip_prefix('{')?;
        let body = &rest[..rest.find('}')?];
        body.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(|item| {
                let (name, value) = item.split_once(':')?;
                Some((
                    name.trim().trim_matches('"').to_owned(),
                    value.trim().parse().ok()?,
                ))
            })
            .collect()
    }

    fn after_key<'a>(json: &'a str, key: &str) -> Option<&'a str> {
        let quoted = format!("\"{key}\"");
        let at = json.find(&quoted)? + quoted.len();
        Some(json[at..].trim_start().strip_prefix(':')?.trim_start())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn reads_flat_truth() {
            let json = r#"{"a": {"01": 3, "0A": 4}, "rows": 7, "endian": "big"}"#;
            assert_eq!(super::number(json, "rows"), Some(7));
            assert_eq!(super::string(json, "endian").as_deref(), Some("big"));
            assert_eq!(
                super::numbers(json, "a"),
                Some(vec![("01".into(), 3), ("0A".into(), 4)])
            );
        }
    }
}

/// Runs the program at `exe` with `args`, writes `stdin` to it, and returns what it did. A
/// program that exits before reading its input (a usage error) is fine: the broken pipe is
/// ignored and its exit code tells.
///
/// # Panics
/// When the program cannot be started or waited for.
pub fn run_with_stdin(exe: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the program starts");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    child
        .wait_with_output()
        .expect("the program can be waited for")
}
