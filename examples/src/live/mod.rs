//! Live capture on Linux: an AF_PACKET socket with a TPACKET_V3 receive ring, filtered in the
//! kernel by a classic BPF program generated from the command line's ports and hosts.
//!
//! Only `ring` holds unsafe code (system calls and the shared ring); everything that reads the
//! kernel's bytes (`block`) or builds the filter (`bpf`) is safe code over slices, tested without
//! a kernel.

pub mod bpf;
