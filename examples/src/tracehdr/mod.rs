//! What `tracehdr` is made of: reading headers ([`input`]), `inspect` ([`inspect`]), the headers
//! a proxy sends for a child span ([`child`]), and the W3C trace-context test-suite service
//! ([`service`]) with its outbound calls ([`callback`]). Everything forwarded goes through
//! `tracectx`: re-encoded from what it validated, never copied from the input.

pub mod callback;
pub mod child;
pub mod input;
pub mod inspect;
pub mod service;

use std::io::Write;
use std::process::ExitCode;

use tracectx::RandomSource;

/// SplitMix64 as a [`RandomSource`]: deterministic for a seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from the clock and the process id.
    pub fn clock_seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    }
}

impl RandomSource for SplitMix64 {
    fn fill_bytes(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let bytes = z.to_le_bytes();
            chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or_default());
        }
    }
}

/// Writes `output` to `out` and flushes it. A closed pipe (`| head`) ends quietly with success;
/// any other write error (a full disk, `/dev/full`) is one line on stderr and a failure.
pub fn emit(out: &mut impl Write, output: &[u8]) -> ExitCode {
    match out.write_all(output).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracehdr: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// At most `max` characters of `text`, escaped as a Rust string literal is, for a log line made
/// of peer-supplied text.
pub fn shown(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!(
            "{:?}… ({} bytes)",
            text.get(..cut).unwrap_or_default(),
            text.len()
        ),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y);
        assert_eq!(x, y);
        assert_ne!(x, [0; 13]);
    }

    #[test]
    fn shown_is_bounded_and_escaped() {
        assert_eq!(shown("a\rb", 10), "\"a\\rb\"");
        let long = "x".repeat(1000);
        assert!(shown(&long, 100).len() < 120);
    }

    /// A writer failing as `/dev/full` or a closed pipe does.
    struct Failing(std::io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_fail_but_a_closed_pipe_does_not() {
        assert_eq!(
            emit(&mut Failing(std::io::ErrorKind::BrokenPipe), b"x"),
            ExitCode::SUCCESS
        );
        assert_eq!(
            emit(&mut Failing(std::io::ErrorKind::StorageFull), b"x"),
            ExitCode::FAILURE
        );
    }
}
