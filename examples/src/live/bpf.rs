//! The in-kernel filter: a classic BPF program generated from `--port`/`--host`, so packets the
//! agent does not want never reach user space. (Generator in progress.)

use std::net::IpAddr;

/// What the captured frames start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// An Ethernet header (also `lo`'s zeroed one): the network header at offset 14.
    Ethernet,
    /// The network header at offset 0 (`SOCK_DGRAM` sockets).
    RawIp,
}

/// What to keep: TCP over IPv4 or IPv6, to or from any of `ports` (all when empty) and any of
/// `hosts` (all when empty).
#[derive(Debug, Clone, Copy)]
pub struct FilterSpec<'a> {
    /// TCP ports, either side.
    pub ports: &'a [u16],
    /// Addresses, either side.
    pub hosts: &'a [IpAddr],
    /// The frames' first header.
    pub link: Link,
    /// Reject packets the kernel marks outgoing (`lo`'s second copy) when the socket option
    /// `PACKET_IGNORE_OUTGOING` is not available.
    pub drop_outgoing: bool,
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Class, size, mode or operation.
    pub code: u16,
    /// Relative jump when true.
    pub jt: u8,
    /// Relative jump when false.
    pub jf: u8,
    /// The constant.
    pub k: u32,
}

/// Bytes a matching packet keeps (tcpdump's default snaplen).
pub const SNAPLEN: u32 = 262_144;

/// The kernel's limit on a program's length (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// Why no program was generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// Too many ports and hosts: the program would exceed [`MAX_INSNS`].
    TooLong {
        /// The program's length.
        insns: usize,
    },
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong { insns } => write!(
                f,
                "the filter would be {insns} instructions, over the kernel's {MAX_INSNS}: fewer --port/--host"
            ),
        }
    }
}

impl std::error::Error for FilterError {}

/// The program keeping what `spec` asks for.
///
/// # Errors
/// [`FilterError::TooLong`] when it would not fit the kernel's limit.
pub fn program(spec: &FilterSpec<'_>) -> Result<Vec<Insn>, FilterError> {
    let _ = spec;
    // Keeps everything until the generator lands.
    Ok(vec![Insn { code: 0x06, jt: 0, jf: 0, k: SNAPLEN }])
}
