//! Workloads for exercising mxproxy: an echo server (optionally server-first, greeting with a
//! banner like MySQL does), and a client that checks every byte that comes back and times each
//! round trip.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Echoes every connection until the client half-closes, then closes. With a `banner`, writes it
/// first, before reading anything (a server-first protocol).
pub async fn serve_echo(listener: TcpListener, banner: Option<Vec<u8>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let banner = banner.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let echo = async {
                if let Some(banner) = &banner {
                    stream.write_all(banner).await?;
                }
                let (mut read, mut write) = stream.split();
                tokio::io::copy(&mut read, &mut write).await?;
                write.shutdown().await
            };
            let _: io::Result<()> = echo.await;
        });
    }
}

/// What one checked connection moved.
#[derive(Debug, Clone, Default)]
pub struct Transfer {
    /// Payload bytes sent (and, since every one came back, received).
    pub bytes: u64,
    /// FNV-1a of everything sent.
    pub sent_checksum: u64,
    /// FNV-1a of everything received after the banner.
    pub received_checksum: u64,
    /// Time from writing each chunk to having read all of it back.
    pub round_trips: Vec<Duration>,
}

/// Connects to `addr` and sends `total` pseudo-random bytes (from `seed`) in `chunk`-sized round
/// trips, checking each echoed chunk byte for byte; expects `banner` first if given, and a clean
/// close with nothing extra after our half-close.
///
/// # Errors
/// I/O errors, and `InvalidData` naming the first byte that differs.
pub async fn checked_echo(
    addr: SocketAddr,
    total: usize,
    chunk: usize,
    seed: u64,
    banner: Option<&[u8]>,
) -> io::Result<Transfer> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    if let Some(banner) = banner {
        let mut got = vec![0u8; banner.len()];
        stream.read_exact(&mut got).await?;
        if got != banner {
            return Err(differs("banner", &got, banner));
        }
    }
    let mut rng = seed | 1;
    let mut sent = vec![0u8; chunk.max(1)];
    let mut back = vec![0u8; chunk.max(1)];
    let mut transfer = Transfer {
        sent_checksum: FNV_OFFSET,
        received_checksum: FNV_OFFSET,
        ..Transfer::default()
    };
    let mut left = total;
    while left > 0 {
        let n = left.min(sent.len());
        let (out, got) = (&mut sent[..n], &mut back[..n]);
        fill(&mut rng, out);
        let started = Instant::now();
        stream.write_all(out).await?;
        stream.read_exact(got).await?;
        transfer.round_trips.push(started.elapsed());
        if out != got {
            return Err(differs("echo", got, out));
        }
        transfer.sent_checksum = fnv1a(transfer.sent_checksum, out);
        transfer.received_checksum = fnv1a(transfer.received_checksum, got);
        transfer.bytes += n as u64;
        left -= n;
    }
    stream.shutdown().await?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await?;
    if !rest.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} unexpected bytes after the last echo", rest.len()),
        ));
    }
    Ok(transfer)
}

fn differs(what: &str, got: &[u8], expected: &[u8]) -> io::Error {
    let at = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{what}: byte {at} differs ({} bytes compared)",
            expected.len()
        ),
    )
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continued from `hash`.
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// xorshift64*: cheap bytes that differ per connection and per chunk.
fn fill(state: &mut u64, out: &mut [u8]) {
    for word in out.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let bytes = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

/// The `p`-th percentile (0–100) of `samples`, sorting them.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}
