//! SIGINT and SIGTERM for every program: the first asks for a graceful stop (flush what is
//! pending, finish requests in flight), a second exits at once (status 1). A blocking loop reads
//! [`StopSignals::requested`]; an async one awaits [`StopSignals::wait`].

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The stop request, as a flag and as a wake-up for async code.
#[derive(Debug)]
pub struct StopSignals {
    flag: Arc<AtomicBool>,
    /// A byte arrives here with each signal (signal-hook's self-pipe).
    wake: UnixStream,
}

/// Registers the handlers.
///
/// # Errors
/// When a handler cannot be registered or the socket pair cannot be made.
pub fn on_stop_signals() -> io::Result<StopSignals> {
    let (read, write) = UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&flag))?;
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
        signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
    }
    Ok(StopSignals { flag, wake: read })
}

impl StopSignals {
    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// The flag itself, for code that polls it.
    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    /// Resolves once a stop is asked for (inside a tokio runtime).
    ///
    /// # Errors
    /// When the socket cannot be handed to the runtime.
    pub async fn wait(self) -> io::Result<()> {
        let wake = tokio::net::UnixStream::from_std(self.wake)?;
        while !self.flag.load(Ordering::Relaxed) {
            // Readable once a signal wrote its byte (or the writer is gone).
            wake.readable().await?;
            let _ = wake.try_read(&mut [0u8; 16]);
        }
        Ok(())
    }
}
