//! The system calls of live capture and the TPACKET_V3 ring shared with the kernel: the only
//! module of the crate with unsafe code (`.ci/run` checks that no other file has any).
//!
//! Everything here is a thin, typed wrapper over one `libc` call; the order of the calls and
//! what their errors mean live in the parent module, and reading a block's bytes lives in
//! `block`. [`BlockGuard`] is the one piece of protocol: it hands out a block only after an
//! acquire load of its status has seen `TP_STATUS_USER`, gives it back to the kernel with a
//! release store of `TP_STATUS_KERNEL` when dropped, and moves on to the next block in ring
//! order. It borrows the ring mutably, so no packet slice outlives its block.

#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::ffi::{CString, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::bpf::Insn;

/// An `int` option's "on".
const ON: c_int = 1;

/// Offset of `hdr.bh1.block_status` in `struct tpacket_block_desc`.
const BLOCK_STATUS_OFFSET: usize = 8;

fn check(ret: c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn socklen<T>() -> libc::socklen_t {
    // Every type passed here is a small fixed-size kernel struct.
    size_of::<T>() as libc::socklen_t
}

/// The system's page size (ring blocks must be a multiple of it).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// `if_nametoindex`: `ENODEV` for a name no interface has (or one that cannot be a name).
pub(crate) fn interface_index(name: &str) -> io::Result<u32> {
    let Ok(c_name) = CString::new(name) else {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: `c_name` is a NUL-terminated string that lives across the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index),
    }
}

fn sockaddr_ll(ifindex: c_int, protocol: u16) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

/// An `AF_PACKET` socket.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// `socket(AF_PACKET, SOCK_RAW or SOCK_DGRAM, 0)`: protocol 0, so nothing is queued until
    /// `bind` names a protocol.
    pub(crate) fn new(raw: bool) -> io::Result<Self> {
        let kind = if raw {
            libc::SOCK_RAW
        } else {
            libc::SOCK_DGRAM
        };
        // SAFETY: socket takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_PACKET, kind | libc::SOCK_CLOEXEC, 0) };
        check(fd)?;
        // SAFETY: `fd` was just returned by socket and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    fn set<T: Copy>(&self, level: c_int, name: c_int, value: &T) -> io::Result<()> {
        // SAFETY: `value` is a live `T` of `size_of::<T>()` bytes that the kernel only reads;
        // any pointer inside it (`sock_fprog`) is kept alive by the caller across the call.
        let ret = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                ptr::from_ref(value).cast::<c_void>(),
                socklen::<T>(),
            )
        };
        check(ret)
    }

    /// `getsockopt` into `out`, which must be a struct of plain integers (any bytes are valid).
    fn get<T: Copy>(&self, level: c_int, name: c_int, out: &mut T) -> io::Result<()> {
        let mut len = socklen::<T>();
        // SAFETY: `out` is a live, writable `T` of `len` bytes and the kernel writes at most
        // `len` bytes; the callers' `T`s are integers or structs of integers, so whatever it
        // writes is a valid value.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                ptr::from_mut(out).cast::<c_void>(),
                &raw mut len,
            )
        };
        check(ret)
    }

    /// `PACKET_IGNORE_OUTGOING` (Linux 4.20+; `ENOPROTOOPT` before).
    pub(crate) fn ignore_outgoing(&self) -> io::Result<()> {
        self.set(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &ON)
    }

    /// `SO_ATTACH_FILTER` with a classic BPF program.
    pub(crate) fn attach_filter(&self, program: &[Insn]) -> io::Result<()> {
        let mut insns: Vec<libc::sock_filter> = program
            .iter()
            .map(|insn| libc::sock_filter {
                code: insn.code,
                jt: insn.jt,
                jf: insn.jf,
                k: insn.k,
            })
            .collect();
        let len =
            u16::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let fprog = libc::sock_fprog {
            len,
            filter: insns.as_mut_ptr(),
        };
        self.set(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
    }

    /// `SO_LOCK_FILTER`: the filter can no longer be changed or removed.
    pub(crate) fn lock_filter(&self) -> io::Result<()> {
        self.set(libc::SOL_SOCKET, libc::SO_LOCK_FILTER, &ON)
    }

    /// `PACKET_VERSION` = `TPACKET_V3`.
    pub(crate) fn use_tpacket_v3(&self) -> io::Result<()> {
        let version = libc::tpacket_versions::TPACKET_V3 as c_int;
        self.set(libc::SOL_PACKET, libc::PACKET_VERSION, &version)
    }

    /// `PACKET_RX_RING` with a `tpacket_req3` (`ENOMEM` when the kernel cannot allocate it).
    pub(crate) fn request_ring(
        &self,
        block_size: u32,
        block_count: u32,
        frame_size: u32,
        retire_ms: u32,
    ) -> io::Result<()> {
        let request = libc::tpacket_req3 {
            tp_block_size: block_size,
            tp_block_nr: block_count,
            tp_frame_size: frame_size,
            tp_frame_nr: block_size / frame_size * block_count,
            tp_retire_blk_tov: retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        self.set(libc::SOL_PACKET, libc::PACKET_RX_RING, &request)
    }

    /// Maps the ring [`Socket::request_ring`] set up, with the same sizes.
    pub(crate) fn map_ring(self, block_size: u32, block_count: u32) -> io::Result<Ring> {
        let block_size = block_size as usize;
        let block_count = block_count as usize;
        let len = block_size
            .checked_mul(block_count)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a fresh mapping (null hint) of exactly the ring's size, as packet_mmap
        // requires, over a socket whose RX ring has that size; the result is checked below.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(map.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Ring {
            map,
            len,
            block_size,
            block_count,
            next: 0,
            socket: self,
        })
    }

    /// `bind` to `sockaddr_ll{AF_PACKET, htons(protocol), ifindex}`; protocol 0 hooks nothing.
    pub(crate) fn bind(&self, ifindex: u32, protocol: u16) -> io::Result<()> {
        let addr = sockaddr_ll(ifindex as c_int, protocol);
        // SAFETY: `addr` is a live `sockaddr_ll` and the length passed is its size.
        let ret = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                socklen::<libc::sockaddr_ll>(),
            )
        };
        check(ret)
    }

    /// `getsockname`: the bound interface's hardware type (`ARPHRD_*`).
    pub(crate) fn hardware_type(&self) -> io::Result<u16> {
        let mut addr = sockaddr_ll(0, 0);
        let mut len = socklen::<libc::sockaddr_ll>();
        // SAFETY: `addr` is a writable `sockaddr_ll` of `len` bytes (the kernel writes at most
        // `len`; every byte pattern is a valid `sockaddr_ll`).
        let ret = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                ptr::from_mut(&mut addr).cast::<libc::sockaddr>(),
                &raw mut len,
            )
        };
        check(ret)?;
        Ok(addr.sll_hatype)
    }

    /// Waits for a ready block or an error, at most `timeout` (rounded up to a millisecond, so
    /// a short non-zero timeout never spins); true when an error is pending (`SO_ERROR`).
    /// `EINTR` returns at once. Whether a block is ready is read from the ring itself.
    pub(crate) fn poll(&self, timeout: Duration) -> io::Result<bool> {
        let millis = timeout.as_nanos().div_ceil(1_000_000);
        let millis = c_int::try_from(millis).unwrap_or(c_int::MAX);
        let mut fds = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: `fds` is one live, writable `pollfd`, and 1 is the count passed.
        let ret = unsafe { libc::poll(&raw mut fds, 1, millis) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            };
        }
        Ok(fds.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0)
    }

    /// `SO_ERROR`: the pending error number, cleared by the read (0 for none).
    pub(crate) fn take_error(&self) -> io::Result<i32> {
        let mut error: c_int = 0;
        self.get(libc::SOL_SOCKET, libc::SO_ERROR, &mut error)?;
        Ok(error)
    }

    /// `PACKET_STATISTICS` (`tpacket_stats_v3`): packets (drops included), drops and queue
    /// freezes since the last read; the kernel resets them on every read.
    pub(crate) fn take_statistics(&self) -> io::Result<(u32, u32, u32)> {
        let mut stats = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        self.get(libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut stats)?;
        Ok((stats.tp_packets, stats.tp_drops, stats.tp_freeze_q_cnt))
    }

    /// `SIOCGIFFLAGS`: whether the interface called `name` is administratively up.
    pub(crate) fn interface_up(&self, name: &str) -> io::Result<bool> {
        // SAFETY: `ifreq` is a C struct of byte arrays, integers and raw pointers in a union,
        // for which all-zero bytes are a valid value.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        if name.len() >= request.ifr_name.len() || name.as_bytes().contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        for (to, from) in request.ifr_name.iter_mut().zip(name.bytes()) {
            *to = from as libc::c_char;
        }
        // SAFETY: `request` is a live, writable `ifreq` with a NUL-terminated name, which is
        // what SIOCGIFFLAGS reads and writes.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SIOCGIFFLAGS as _,
                &raw mut request,
            )
        };
        check(ret)?;
        // SAFETY: SIOCGIFFLAGS filled the union's `ifru_flags` member; any short is valid.
        let flags = unsafe { request.ifr_ifru.ifru_flags };
        Ok(c_int::from(flags) & libc::IFF_UP != 0)
    }
}

/// A socket with its mapped TPACKET_V3 receive ring.
#[derive(Debug)]
pub(crate) struct Ring {
    map: NonNull<u8>,
    len: usize,
    block_size: usize,
    block_count: usize,
    /// The block the kernel fills next after the ones already handed back, in ring order.
    next: usize,
    /// Dropped (closed) after `Drop::drop` has unmapped the ring.
    socket: Socket,
}

// SAFETY: the mapping is owned by the `Ring` alone (nothing else holds its address) and is
// only touched through `&self`/`&mut self`, so moving the ring to another thread is sound.
unsafe impl Send for Ring {}

impl Ring {
    /// The socket the ring belongs to.
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    fn status(&self, block: usize) -> &AtomicU32 {
        debug_assert!(block < self.block_count);
        // SAFETY: `block < block_count`, so the word lies inside the mapping, which lives as
        // long as `&self`; the mapping is page-aligned and the kernel accepted the ring only
        // with a page-aligned block size, so offset 8 of a block is aligned for a u32. The kernel accesses this word with its own barriers and we only ever access it
        // atomically.
        unsafe {
            AtomicU32::from_ptr(
                self.map
                    .as_ptr()
                    .add(block * self.block_size + BLOCK_STATUS_OFFSET)
                    .cast::<u32>(),
            )
        }
    }

    /// Whether the next block in ring order belongs to user space.
    pub(crate) fn ready(&self) -> bool {
        self.status(self.next).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// The next block in ring order, if the kernel has handed it over.
    pub(crate) fn next_block(&mut self) -> Option<BlockGuard<'_>> {
        self.ready().then_some(BlockGuard { ring: self })
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `map`/`len` are exactly what mmap returned and were given; no slice into the
        // mapping can outlive `&mut self` (BlockGuard borrows the ring), so nothing uses it after.
        unsafe {
            libc::munmap(self.map.as_ptr().cast::<c_void>(), self.len);
        }
    }
}

/// A block handed over by the kernel; handed back (in ring order) when dropped.
#[derive(Debug)]
pub(crate) struct BlockGuard<'ring> {
    ring: &'ring mut Ring,
}

impl BlockGuard<'_> {
    /// The whole block: descriptor, then packets.
    pub(crate) fn bytes(&self) -> &[u8] {
        let ring = &*self.ring;
        // SAFETY: the block lies inside the mapping (`next < block_count`). Its status had
        // TP_STATUS_USER under an acquire load (`Ring::next_block`), which makes the kernel's
        // writes to it visible, and the kernel does not write a user-owned block until we store
        // TP_STATUS_KERNEL, which happens in `drop`, after this borrow of `self` has ended.
        unsafe {
            std::slice::from_raw_parts(
                ring.map.as_ptr().add(ring.next * ring.block_size),
                ring.block_size,
            )
        }
    }
}

impl Drop for BlockGuard<'_> {
    fn drop(&mut self) {
        let ring = &mut *self.ring;
        ring.status(ring.next)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        ring.next = (ring.next + 1) % ring.block_count;
    }
}
