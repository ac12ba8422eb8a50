//! Live capture on Linux: an AF_PACKET socket with a TPACKET_V3 receive ring, filtered in the
//! kernel by a classic BPF program generated from the command line's ports and hosts.
//!
//! Only `ring` holds unsafe code (system calls and the shared ring); everything that reads the
//! kernel's bytes (`block`) or builds the filter (`bpf`) is safe code over slices, tested without
//! a kernel.
//!
//! [`LiveCapture::open`] sets the socket up in the race-free order: a packet socket with
//! protocol 0 (nothing is queued yet), `PACKET_IGNORE_OUTGOING` on `lo`, the filter (then
//! locked), `TPACKET_V3`, the ring, its mapping, and only then `bind` to the interface with
//! `ETH_P_ALL`. [`LiveCapture::next_block`] waits (with a finite timeout) for the next block and
//! hands its packets to a closure, borrowed from the ring: no copy, no allocation per packet.
//!
//! On `lo` every packet passes the tap twice (sent, then received); the outgoing copy is dropped
//! by `PACKET_IGNORE_OUTGOING`, or by the filter on kernels without it, and
//! [`LiveStats::outgoing_on_lo`] counts any that still arrive (it must stay 0). Other
//! interfaces keep both directions.
//!
//! An interface that goes down is reported by [`LiveCapture::is_up`] and the socket is kept:
//! the kernel hooks it again when the interface comes back. One that is removed or re-created
//! (a new index behind the same name) ends the capture with [`LiveError::InterfaceGone`]; the
//! caller reopens.

pub mod block;
pub mod bpf;
mod ring;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::capture::{LinkType, PacketRef};

/// `tp_frame_size`: TPACKET_V3 packs packets of any size into a block, so this only feeds the
/// kernel's `tp_frame_nr` check.
const FRAME_SIZE: usize = 2048;

/// How often [`LiveCapture::next_block`] checks that the interface's name still has the
/// index the socket is bound to.
pub const INDEX_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The receive ring's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block: a multiple of the page size and of 2048. The largest packet kept whole
    /// is a block minus its headers, so keep it at least twice the largest GSO packet.
    pub block_size: usize,
    /// Blocks in the ring. When the kernel cannot allocate them ([`LiveCapture::ring`] shows
    /// what was built), the count is halved, down to 2.
    pub block_count: usize,
    /// Milliseconds after which the kernel hands over a block that is not full
    /// (`tp_retire_blk_tov`): the longest a packet waits at low rates.
    pub retire_ms: u32,
}

impl Default for RingConfig {
    /// 8 blocks of 1 MiB, retired after 20 ms.
    fn default() -> Self {
        Self {
            block_size: 1 << 20,
            block_count: 8,
            retire_ms: 20,
        }
    }
}

/// What to capture.
#[derive(Debug, Clone, Default)]
pub struct LiveConfig {
    /// The interface's name (`lo`, `eth0`).
    pub interface: String,
    /// TCP ports to keep, either side (all when empty).
    pub ports: Vec<u16>,
    /// Addresses to keep, either side (all when empty).
    pub hosts: Vec<IpAddr>,
    /// The ring.
    pub ring: RingConfig,
}

impl LiveConfig {
    /// Everything TCP on `interface`, default ring.
    pub fn new(interface: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            ..Self::default()
        }
    }
}

/// Running totals of the kernel's `PACKET_STATISTICS` (which it resets on every read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelStats {
    /// Packets the filter kept and the ring received (`tp_packets - tp_drops`).
    pub packets: u64,
    /// Packets the filter kept that were dropped: the ring was full (`tp_drops`).
    pub drops: u64,
    /// Times the ring was full and the kernel waited for user space (`tp_freeze_q_cnt`).
    pub freezes: u64,
}

impl KernelStats {
    /// Adds one `tpacket_stats_v3` reading.
    fn add(&mut self, packets: u32, drops: u32, freezes: u32) {
        self.packets += u64::from(packets.saturating_sub(drops));
        self.drops += u64::from(drops);
        self.freezes += u64::from(freezes);
    }
}

/// Counters kept in user space by [`LiveCapture::next_block`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveStats {
    /// Blocks read.
    pub blocks: u64,
    /// `poll` calls (a block already waiting is read without one).
    pub polls: u64,
    /// Packets handed to the caller.
    pub packets: u64,
    /// Captured bytes handed to the caller.
    pub bytes: u64,
    /// Packets cut by the snaplen (captured fewer bytes than their length).
    pub truncated: u64,
    /// Outgoing copies that reached the ring on `lo` although they are filtered out: skipped,
    /// and should stay 0.
    pub outgoing_on_lo: u64,
    /// Times the interface went down (`ENETDOWN`).
    pub down_events: u64,
    /// Blocks whose layout was inconsistent: their remaining packets were skipped.
    pub malformed_blocks: u64,
}

/// Why a capture could not be opened or continued.
#[derive(Debug)]
#[non_exhaustive]
pub enum LiveError {
    /// The process may not open packet sockets (`EPERM`).
    Permission {
        /// The interface asked for.
        interface: String,
    },
    /// No interface has that name (in this network namespace).
    NoSuchInterface {
        /// The interface asked for.
        interface: String,
    },
    /// The interface was removed, or re-created with a new index: reopen.
    InterfaceGone {
        /// The interface captured on.
        interface: String,
    },
    /// The filter could not be built.
    Filter(bpf::FilterError),
    /// A system call failed.
    Io {
        /// The step that failed.
        what: &'static str,
        /// What the system said.
        source: io::Error,
    },
}

impl fmt::Display for LiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Permission { interface } => write!(
                f,
                "capturing on {interface} needs the CAP_NET_RAW capability \
                 (run as root, or: setcap cap_net_raw+ep <binary>)"
            ),
            Self::NoSuchInterface { interface } => {
                write!(f, "no network interface named {interface:?}")
            }
            Self::InterfaceGone { interface } => write!(
                f,
                "interface {interface} was removed or re-created: the capture must be reopened"
            ),
            Self::Filter(err) => write!(f, "capture filter: {err}"),
            Self::Io { what, source } => write!(f, "live capture: {what}: {source}"),
        }
    }
}

impl std::error::Error for LiveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Filter(err) => Some(err),
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Maps a failed system call while opening `interface`: `EPERM`/`EACCES` is a missing
/// capability, `ENODEV`/`ENXIO` a missing interface, anything else an I/O error of step `what`.
fn open_error(what: &'static str, interface: &str, source: io::Error) -> LiveError {
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => LiveError::Permission {
            interface: interface.to_owned(),
        },
        Some(libc::ENODEV | libc::ENXIO) => LiveError::NoSuchInterface {
            interface: interface.to_owned(),
        },
        _ => LiveError::Io { what, source },
    }
}

fn invalid(what: &'static str, message: String) -> LiveError {
    LiveError::Io {
        what,
        source: io::Error::new(io::ErrorKind::InvalidInput, message),
    }
}

/// `ARPHRD_ETHER`, `ARPHRD_LOOPBACK`: frames with an Ethernet header (`SOCK_RAW`).
fn has_ethernet_header(hatype: u16) -> bool {
    matches!(hatype, libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK)
}

/// A live capture on one interface.
#[derive(Debug)]
pub struct LiveCapture {
    interface: String,
    ifindex: u32,
    link: LinkType,
    loopback: bool,
    ring: ring::Ring,
    ring_config: RingConfig,
    filter: String,
    up: bool,
    last_index_check: Instant,
    kernel: KernelStats,
    stats: LiveStats,
}

impl LiveCapture {
    /// Opens a capture on `config.interface`, keeping TCP to or from `config.ports` and
    /// `config.hosts`.
    ///
    /// # Errors
    /// [`LiveError::Permission`] without `CAP_NET_RAW`, [`LiveError::NoSuchInterface`],
    /// [`LiveError::Filter`] when the ports and hosts make too long a program, and
    /// [`LiveError::Io`] for a ring the configuration or the kernel refuses.
    ///
    /// # Panics
    /// Never.
    pub fn open(config: &LiveConfig) -> Result<Self, LiveError> {
        let name = config.interface.as_str();
        let (block_size, block_count) = Self::check_ring(&config.ring)?;
        let ifindex =
            ring::interface_index(name).map_err(|e| open_error("if_nametoindex", name, e))?;

        // A socket bound with protocol 0 hooks nothing: it only tells the hardware type,
        // which decides the socket type of the real one.
        let probe = ring::Socket::new(true).map_err(|e| open_error("socket", name, e))?;
        probe
            .bind(ifindex, 0)
            .map_err(|e| open_error("bind", name, e))?;
        let hatype = probe
            .hardware_type()
            .map_err(|e| open_error("getsockname", name, e))?;
        drop(probe);
        let ethernet = has_ethernet_header(hatype);
        let loopback = hatype == libc::ARPHRD_LOOPBACK;
        let (link, filter_link) = if ethernet {
            (LinkType::Ethernet, bpf::Link::Ethernet)
        } else {
            (LinkType::RawIp, bpf::Link::RawIp)
        };

        let socket = ring::Socket::new(ethernet).map_err(|e| open_error("socket", name, e))?;
        let mut outgoing = "";
        let mut drop_outgoing = false;
        if loopback {
            match socket.ignore_outgoing() {
                Ok(()) => outgoing = "; lo: outgoing copies skipped by PACKET_IGNORE_OUTGOING",
                Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                    drop_outgoing = true;
                    outgoing = "; lo: outgoing copies dropped by the filter";
                }
                Err(e) => return Err(open_error("PACKET_IGNORE_OUTGOING", name, e)),
            }
        }
        let spec = bpf::FilterSpec {
            ports: &config.ports,
            hosts: &config.hosts,
            link: filter_link,
            drop_outgoing,
        };
        let program = bpf::program(&spec).map_err(LiveError::Filter)?;
        socket
            .attach_filter(&program)
            .map_err(|e| open_error("SO_ATTACH_FILTER", name, e))?;
        socket
            .lock_filter()
            .map_err(|e| open_error("SO_LOCK_FILTER", name, e))?;
        socket
            .use_tpacket_v3()
            .map_err(|e| open_error("PACKET_VERSION", name, e))?;

        let mut block_count = block_count;
        loop {
            match socket.request_ring(
                block_size,
                block_count,
                FRAME_SIZE as u32,
                config.ring.retire_ms,
            ) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && block_count > 2 => {
                    block_count = (block_count / 2).max(2);
                }
                Err(e) => return Err(open_error("PACKET_RX_RING", name, e)),
            }
        }
        let ring = socket
            .map_ring(block_size, block_count)
            .map_err(|e| open_error("mmap", name, e))?;
        ring.socket()
            .bind(ifindex, libc::ETH_P_ALL as u16)
            .map_err(|e| open_error("bind", name, e))?;
        let up = ring.socket().interface_up(name).unwrap_or(true);

        let filter = format!(
            "{}; {} cBPF instructions{outgoing}",
            bpf::describe(&spec),
            program.len()
        );
        Ok(Self {
            interface: config.interface.clone(),
            ifindex,
            link,
            loopback,
            ring,
            ring_config: RingConfig {
                block_count: block_count as usize,
                ..config.ring
            },
            filter,
            up,
            last_index_check: Instant::now(),
            kernel: KernelStats::default(),
            stats: LiveStats::default(),
        })
    }

    fn check_ring(ring: &RingConfig) -> Result<(u32, u32), LiveError> {
        let page = ring::page_size().max(FRAME_SIZE);
        let size = u32::try_from(ring.block_size).ok();
        let count = u32::try_from(ring.block_count).ok();
        match (size, count) {
            (Some(size), Some(count))
                if ring.block_size >= page
                    && ring.block_size.is_multiple_of(page)
                    && count >= 1
                    && u32::try_from(ring.block_size / FRAME_SIZE * ring.block_count).is_ok() =>
            {
                Ok((size, count))
            }
            _ => Err(invalid(
                "ring size",
                format!(
                    "{} blocks of {} bytes: need at least one block, a multiple of {page} bytes",
                    ring.block_count, ring.block_size
                ),
            )),
        }
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// How the packets handed out are framed: [`LinkType::Ethernet`] on Ethernet and loopback
    /// interfaces, [`LinkType::RawIp`] (starting at the IP header) on any other.
    pub fn link(&self) -> LinkType {
        self.link
    }

    /// The ring as built (fewer blocks than asked when the kernel was short of memory).
    pub fn ring(&self) -> RingConfig {
        self.ring_config
    }

    /// What the kernel filter keeps, in words.
    pub fn filter_description(&self) -> String {
        self.filter.clone()
    }

    /// Waits at most `timeout` for the next block and hands each of its packets to
    /// `on_packet`; returns how many (0 on timeout, on a signal, or while the interface is
    /// down). Packets are borrowed from the ring and valid only during the call.
    ///
    /// # Errors
    /// [`LiveError::InterfaceGone`] once the interface's name no longer has the bound index
    /// (checked every [`INDEX_CHECK_INTERVAL`] and when the interface goes down), and
    /// [`LiveError::Io`] when `poll` or `getsockopt` fail.
    ///
    /// # Panics
    /// Never.
    pub fn next_block(
        &mut self,
        timeout: Duration,
        mut on_packet: impl FnMut(PacketRef<'_>),
    ) -> Result<usize, LiveError> {
        if self.last_index_check.elapsed() >= INDEX_CHECK_INTERVAL {
            self.check_index()?;
        }
        if !self.ring.ready() {
            self.stats.polls += 1;
            let error = self
                .ring
                .socket()
                .poll(timeout)
                .map_err(|source| LiveError::Io {
                    what: "poll",
                    source,
                })?;
            if error {
                self.take_socket_error()?;
            }
        }
        let Some(block) = self.ring.next_block() else {
            if !self.up {
                self.up = self
                    .ring
                    .socket()
                    .interface_up(&self.interface)
                    .unwrap_or(false);
            }
            return Ok(0);
        };
        self.up = true;
        self.stats.blocks += 1;
        let mut count = 0;
        match block::packets(block.bytes(), self.link) {
            Ok(frames) => {
                for frame in frames {
                    let Ok(frame) = frame else {
                        self.stats.malformed_blocks += 1;
                        break;
                    };
                    if self.loopback && frame.pkttype == block::PACKET_OUTGOING {
                        self.stats.outgoing_on_lo += 1;
                        continue;
                    }
                    let packet = frame.packet;
                    self.stats.packets += 1;
                    self.stats.bytes += packet.data.len() as u64;
                    self.stats.truncated += u64::from(packet.is_truncated());
                    count += 1;
                    on_packet(packet);
                }
            }
            Err(_) => self.stats.malformed_blocks += 1,
        }
        drop(block);
        Ok(count)
    }

    /// Reads and clears `SO_ERROR` after `POLLERR`.
    fn take_socket_error(&mut self) -> Result<(), LiveError> {
        let error = self
            .ring
            .socket()
            .take_error()
            .map_err(|source| LiveError::Io {
                what: "SO_ERROR",
                source,
            })?;
        match error {
            0 => Ok(()),
            libc::ENETDOWN => {
                if self.up {
                    self.stats.down_events += 1;
                }
                self.up = false;
                // A removed interface reports ENETDOWN too: tell the two apart now.
                self.check_index()
            }
            errno => Err(LiveError::Io {
                what: "socket error",
                source: io::Error::from_raw_os_error(errno),
            }),
        }
    }

    fn check_index(&mut self) -> Result<(), LiveError> {
        self.last_index_check = Instant::now();
        match ring::interface_index(&self.interface) {
            Ok(index) if index == self.ifindex => Ok(()),
            Ok(_) => Err(self.gone()),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(self.gone()),
            Err(source) => Err(LiveError::Io {
                what: "if_nametoindex",
                source,
            }),
        }
    }

    fn gone(&self) -> LiveError {
        LiveError::InterfaceGone {
            interface: self.interface.clone(),
        }
    }

    /// Whether the interface is up: false from the `ENETDOWN` the kernel reports when it goes
    /// down, true again once packets flow or the interface is seen up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The kernel's counters since the capture was opened (read from `PACKET_STATISTICS` and
    /// added up: the kernel resets them on every read).
    ///
    /// # Errors
    /// [`LiveError::Io`] when `getsockopt` fails.
    pub fn kernel_stats(&mut self) -> Result<KernelStats, LiveError> {
        let (packets, drops, freezes) =
            self.ring
                .socket()
                .take_statistics()
                .map_err(|source| LiveError::Io {
                    what: "PACKET_STATISTICS",
                    source,
                })?;
        self.kernel.add(packets, drops, freezes);
        Ok(self.kernel)
    }

    /// The counters kept in user space.
    pub fn stats(&self) -> LiveStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_the_error_a_user_can_act_on() {
        let err = open_error("socket", "lo", io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(&err, LiveError::Permission { interface } if interface == "lo"));
        assert_eq!(
            err.to_string(),
            "capturing on lo needs the CAP_NET_RAW capability \
             (run as root, or: setcap cap_net_raw+ep <binary>)"
        );
        let err = open_error("bind", "eth9", io::Error::from_raw_os_error(libc::ENODEV));
        assert!(matches!(&err, LiveError::NoSuchInterface { interface } if interface == "eth9"));
        assert_eq!(err.to_string(), "no network interface named \"eth9\"");
        let err = open_error(
            "PACKET_RX_RING",
            "lo",
            io::Error::from_raw_os_error(libc::ENOMEM),
        );
        assert!(matches!(
            err,
            LiveError::Io {
                what: "PACKET_RX_RING",
                ..
            }
        ));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn kernel_stats_accumulate_across_resetting_reads() {
        let mut stats = KernelStats::default();
        stats.add(100, 10, 1);
        stats.add(0, 0, 0);
        stats.add(50, 0, 0);
        stats.add(3, 5, 0); // never negative
        assert_eq!(
            stats,
            KernelStats {
                packets: 140,
                drops: 15,
                freezes: 1
            }
        );
    }

    #[test]
    fn ring_shapes_are_checked_before_any_system_call() {
        let ok = RingConfig::default();
        assert_eq!(LiveCapture::check_ring(&ok).unwrap_or((0, 0)), (1 << 20, 8));
        for bad in [
            RingConfig {
                block_size: 1000,
                ..ok
            },
            RingConfig {
                block_size: 0,
                ..ok
            },
            RingConfig {
                block_count: 0,
                ..ok
            },
            RingConfig {
                block_size: usize::MAX,
                ..ok
            },
        ] {
            assert!(matches!(
                LiveCapture::check_ring(&bad),
                Err(LiveError::Io {
                    what: "ring size",
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_capture_can_move_to_its_thread() {
        fn send<T: Send>() {}
        send::<LiveCapture>();
    }

    #[test]
    fn link_follows_the_hardware_type() {
        assert!(has_ethernet_header(1));
        assert!(has_ethernet_header(772));
        assert!(!has_ethernet_header(65534)); // ARPHRD_NONE (tun)
        assert!(!has_ethernet_header(776)); // ARPHRD_SIT
    }
}
