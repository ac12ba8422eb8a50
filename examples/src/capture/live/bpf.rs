//! The in-kernel filter: a classic BPF program generated from `--port`/`--host`, so packets the
//! agent does not want never reach user space.
//!
//! [`program`] keeps TCP over IPv4 or IPv6 to or from the given ports and hosts, in the shape of
//! the live-capture spec (§9, "Filter shape"):
//!
//! ```text
//! [drop_outgoing] ld [SKF_AD_OFF+SKF_AD_PKTTYPE] ; jeq #4 -> REJECT
//! ldh [12] ; jeq #0x0800 -> V4 ; jeq #0x86dd -> V6 else REJECT   (RawIp: the version nibble)
//! V4:  ldb [23] jeq #6 else REJECT ; ldh [20] jset #0x1fff -> REJECT
//!      [hosts] ld [26] jeq H… -> V4P ; ld [30] jeq H… -> V4P else REJECT
//! V4P: [ports] ldxb 4*([14]&0xf) ; ldh [x+14] jeq P… -> KEEP ; ldh [x+16] jeq P… -> KEEP else REJECT
//! V6:  ldb [20] jeq #6 else REJECT
//!      [hosts] 4×ld [22..34] jeq… -> V6P ; 4×ld [38..50] jeq… -> V6P else REJECT
//! V6P: [ports] ldh [54] jeq P… -> KEEP ; ldh [56] jeq P… -> KEEP else REJECT
//! KEEP: ret #262144     REJECT: ret #0
//! ```
//!
//! What it rejects beyond the obvious, on purpose:
//! - Ethernet frames with an inline VLAN tag (0x8100, 0x88a8, 0x9100): pod veths carry no tags,
//!   and a tag the NIC or kernel stripped is not in the frame the filter sees anyway.
//! - IPv6 packets with extension headers before TCP: like tcpdump's `tcp port N`, the program
//!   reads the fixed header's next-header field only and does not walk the chain.
//! - IPv4 fragments after the first: they carry no TCP header, so the bytes where the ports would
//!   be are payload.
//!
//! The program is written with a small assembler: jumps name labels, and the labels
//! are placed at the end, with `ja` trampolines added where a conditional jump (8-bit offset)
//! cannot reach, so the generator reads like the listing above.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    /// Addresses, either side. An IPv4 packet is matched against the IPv4 ones only, an IPv6
    /// packet against the IPv6 ones; a family with no address listed (when others are) is
    /// rejected.
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
        /// The program's length when the generator gave up: over [`MAX_INSNS`], and possibly
        /// short of the `ja` trampolines the whole program would need.
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

// Opcodes (`include/uapi/linux/bpf_common.h`, `filter.h`): class | size | mode, or
// class | operation | source.
/// `ld [k]`: 32 bits, big-endian.
const LD_W_ABS: u16 = 0x20;
/// `ldh [k]`.
const LD_H_ABS: u16 = 0x28;
/// `ldb [k]`.
const LD_B_ABS: u16 = 0x30;
/// `ldh [x + k]`.
const LD_H_IND: u16 = 0x48;
/// `ldxb 4*([k]&0xf)`: an IPv4 header's length into X.
const LDX_B_MSH: u16 = 0xb1;
/// `and #k`.
const ALU_AND_K: u16 = 0x54;
/// `ja k`: unconditional, 32-bit offset.
const JMP_JA: u16 = 0x05;
/// `jeq #k`.
const JMP_JEQ_K: u16 = 0x15;
/// `jset #k`: taken when `A & k != 0`.
const JMP_JSET_K: u16 = 0x45;
/// `ret #k`.
const RET_K: u16 = 0x06;

/// `SKF_AD_OFF + SKF_AD_PKTTYPE` (-0x1000 + 4): the ancillary load of the packet type.
const SKF_AD_PKTTYPE: u32 = 0xffff_f004;
/// `PACKET_OUTGOING`.
const PACKET_OUTGOING: u32 = 4;

/// Offset of the ether type in an Ethernet header.
const ETHER_TYPE: u32 = 12;
/// Length of an Ethernet header: where the network header starts.
const ETHER_LEN: u32 = 14;
/// `ETH_P_IP`.
const ETHER_TYPE_IPV4: u32 = 0x0800;
/// `ETH_P_IPV6`.
const ETHER_TYPE_IPV6: u32 = 0x86dd;
/// The IP version nibble, for frames without a link header.
const VERSION_MASK: u32 = 0xf0;
/// IPv4's version nibble in place.
const VERSION_IPV4: u32 = 0x40;
/// IPv6's version nibble in place.
const VERSION_IPV6: u32 = 0x60;

/// `IPPROTO_TCP`.
const TCP: u32 = 6;
/// IPv4: flags and fragment offset (16 bits).
const IPV4_FRAGMENT: u32 = 6;
/// The fragment offset's bits: non-zero in every fragment but the first.
const IPV4_FRAGMENT_OFFSET: u32 = 0x1fff;
/// IPv4: protocol.
const IPV4_PROTOCOL: u32 = 9;
/// IPv4: source address.
const IPV4_SOURCE: u32 = 12;
/// IPv4: destination address.
const IPV4_DESTINATION: u32 = 16;
/// IPv6: next header of the fixed header.
const IPV6_NEXT_HEADER: u32 = 6;
/// IPv6: source address.
const IPV6_SOURCE: u32 = 8;
/// IPv6: destination address.
const IPV6_DESTINATION: u32 = 24;
/// IPv6: length of the fixed header, where TCP starts when no extension header follows.
const IPV6_LEN: u32 = 40;
/// TCP: source port.
const TCP_SOURCE: u32 = 0;
/// TCP: destination port.
const TCP_DESTINATION: u32 = 2;

/// The farthest a conditional jump reaches: its offsets are 8 bits.
const MAX_JUMP: usize = u8::MAX as usize;
/// How far before the end of a jump's reach a new island of trampolines starts: room for the
/// `ja` over it and the few trampolines later jumps from before it may add.
const ISLAND_ROOM: usize = 8;

/// The program keeping what `spec` asks for (see the module documentation for its shape and for
/// what it rejects).
///
/// Ports and hosts may repeat and come in any order: the program tests each once, in ascending
/// order.
///
/// # Errors
/// [`FilterError::TooLong`] when it would not fit the kernel's limit.
///
/// # Panics
/// Never.
pub fn program(spec: &FilterSpec<'_>) -> Result<Vec<Insn>, FilterError> {
    let lists = Lists::new(spec);
    let l3 = match spec.link {
        Link::Ethernet => ETHER_LEN,
        Link::RawIp => 0,
    };
    let mut asm = Asm::default();
    let keep = asm.label();
    let reject = asm.label();
    let exits = Exits {
        keep: &keep,
        reject: &reject,
    };
    if spec.drop_outgoing {
        reject_outgoing(&mut asm, exits.reject);
    }
    let v4 = lists.wants_ipv4().then(|| asm.label());
    let v6 = lists.wants_ipv6().then(|| asm.label());
    dispatch(&mut asm, spec.link, v4.as_ref(), v6.as_ref(), exits.reject);
    if let Some(v4) = v4 {
        asm.bind(v4);
        ipv4(&mut asm, l3, &lists, &exits);
    }
    if let Some(v6) = v6 {
        asm.bind(v6);
        ipv6(&mut asm, l3, &lists, &exits);
    }
    asm.bind(keep);
    asm.ret(SNAPLEN);
    asm.bind(reject);
    asm.ret(0);
    asm.finish()
}

/// The tcpdump expression `spec`'s program is equivalent to, for the start-up log line, e.g.
/// `tcp and (port 80 or port 8080) and (host 127.0.0.1)`; `inbound and …` with
/// [`FilterSpec::drop_outgoing`].
///
/// Two differences from what tcpdump compiles for it: IPv4 fragments after the first are
/// rejected even without a port (tcpdump's plain `tcp` keeps them), and so are IPv6 packets with
/// an extension header (tcpdump's plain `tcp` looks past a fragment header). With a port, the
/// two agree.
///
/// # Panics
/// Never.
pub fn describe(spec: &FilterSpec<'_>) -> String {
    let lists = Lists::new(spec);
    let mut terms = Vec::new();
    if spec.drop_outgoing {
        terms.push("inbound".to_owned());
    }
    terms.push("tcp".to_owned());
    let ports: Vec<String> = lists
        .ports
        .iter()
        .map(|port| format!("port {port}"))
        .collect();
    let hosts: Vec<String> = (lists.v4.iter().map(ToString::to_string))
        .chain(lists.v6.iter().map(ToString::to_string))
        .map(|host| format!("host {host}"))
        .collect();
    for alternatives in [ports, hosts] {
        if !alternatives.is_empty() {
            terms.push(format!("({})", alternatives.join(" or ")));
        }
    }
    terms.join(" and ")
}

/// The spec's ports and hosts, sorted, without duplicates, hosts split by family.
struct Lists {
    ports: Vec<u16>,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
}

impl Lists {
    fn new(spec: &FilterSpec<'_>) -> Self {
        let mut ports = spec.ports.to_vec();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for host in spec.hosts {
            match host {
                IpAddr::V4(address) => v4.push(*address),
                IpAddr::V6(address) => v6.push(*address),
            }
        }
        ports.sort_unstable();
        ports.dedup();
        v4.sort_unstable();
        v4.dedup();
        v6.sort_unstable();
        v6.dedup();
        Self { ports, v4, v6 }
    }

    /// Whether IPv4 packets can match: no host was given, or an IPv4 one was.
    fn wants_ipv4(&self) -> bool {
        !self.v4.is_empty() || self.v6.is_empty()
    }

    /// Whether IPv6 packets can match.
    fn wants_ipv6(&self) -> bool {
        !self.v6.is_empty() || self.v4.is_empty()
    }

    /// The ports, as one-word values for [`match_any`].
    fn port_words(&self) -> Vec<[u32; 1]> {
        self.ports.iter().map(|port| [u32::from(*port)]).collect()
    }
}

/// The program's two ends.
struct Exits<'l> {
    /// `ret #SNAPLEN`.
    keep: &'l Label,
    /// `ret #0`.
    reject: &'l Label,
}

/// `lo` shows every packet twice; the outgoing copy goes (spec §3, option a).
fn reject_outgoing(asm: &mut Asm, reject: &Label) {
    asm.load(Load::word(SKF_AD_PKTTYPE));
    asm.jeq(PACKET_OUTGOING, Jump::To(reject), Jump::Next);
}

/// Jumps to `v4`/`v6` by the network protocol; anything else (ARP, VLAN-tagged frames, a family
/// no host belongs to) is rejected.
fn dispatch(asm: &mut Asm, link: Link, v4: Option<&Label>, v6: Option<&Label>, reject: &Label) {
    let (ipv4, ipv6) = match link {
        Link::Ethernet => {
            asm.load(Load::half(ETHER_TYPE));
            (ETHER_TYPE_IPV4, ETHER_TYPE_IPV6)
        }
        Link::RawIp => {
            asm.load(Load::byte(0));
            asm.and(VERSION_MASK);
            (VERSION_IPV4, VERSION_IPV6)
        }
    };
    let families: Vec<(u32, &Label)> = [(ipv4, v4), (ipv6, v6)]
        .into_iter()
        .filter_map(|(value, label)| label.map(|label| (value, label)))
        .collect();
    for (index, (value, label)) in families.iter().enumerate() {
        let otherwise = if index + 1 == families.len() {
            Jump::To(reject)
        } else {
            Jump::Next
        };
        asm.jeq(*value, Jump::To(label), otherwise);
    }
}

/// IPv4 at `l3`: TCP, first fragment (or none), then hosts and ports.
fn ipv4(asm: &mut Asm, l3: u32, lists: &Lists, exits: &Exits<'_>) {
    let hosts: Vec<[u32; 1]> = lists.v4.iter().map(|host| [host.to_bits()]).collect();
    let ports = lists.port_words();
    asm.load(Load::byte(l3 + IPV4_PROTOCOL));
    asm.jeq(TCP, Jump::Next, Jump::To(exits.reject));
    asm.load(Load::half(l3 + IPV4_FRAGMENT));
    asm.jset(
        IPV4_FRAGMENT_OFFSET,
        Jump::To(exits.reject),
        more_tests(&hosts, &ports, exits),
    );
    let addresses = [
        [Load::word(l3 + IPV4_SOURCE)],
        [Load::word(l3 + IPV4_DESTINATION)],
    ];
    // Ports sit after the options: X = the header's length, and the loads are relative to it.
    let ports_at = [
        [Load::half_x(l3 + TCP_SOURCE)],
        [Load::half_x(l3 + TCP_DESTINATION)],
    ];
    hosts_then_ports(
        asm,
        (&addresses, &hosts),
        Some(l3),
        (&ports_at, &ports),
        exits,
    );
}

/// IPv6 at `l3`: TCP right after the fixed header, then hosts and ports.
fn ipv6(asm: &mut Asm, l3: u32, lists: &Lists, exits: &Exits<'_>) {
    let hosts: Vec<[u32; 4]> = lists.v6.iter().map(|host| words(*host)).collect();
    let ports = lists.port_words();
    asm.load(Load::byte(l3 + IPV6_NEXT_HEADER));
    asm.jeq(
        TCP,
        more_tests(&hosts, &ports, exits),
        Jump::To(exits.reject),
    );
    let address = |at: u32| [0, 4, 8, 12].map(|word| Load::word(l3 + at + word));
    let addresses = [address(IPV6_SOURCE), address(IPV6_DESTINATION)];
    let ports_at = [
        [Load::half(l3 + IPV6_LEN + TCP_SOURCE)],
        [Load::half(l3 + IPV6_LEN + TCP_DESTINATION)],
    ];
    hosts_then_ports(asm, (&addresses, &hosts), None, (&ports_at, &ports), exits);
}

/// An IPv6 address as the four big-endian words `ld` loads.
fn words(address: Ipv6Addr) -> [u32; 4] {
    let bits = address.to_bits();
    // Truncation picks each 32-bit word.
    [96, 64, 32, 0].map(|shift| (bits >> shift) as u32)
}

/// Where a family's last protocol check goes on success: on to the host or port test when there
/// is one, else straight to the end.
fn more_tests<'l, const N: usize>(
    hosts: &[[u32; N]],
    ports: &[[u32; 1]],
    exits: &Exits<'l>,
) -> Jump<'l> {
    if hosts.is_empty() && ports.is_empty() {
        Jump::To(exits.keep)
    } else {
        Jump::Next
    }
}

/// A field tested on both sides of a connection (source, destination), against a list.
type Test<'a, const N: usize> = (&'a [[Load; N]; 2], &'a [[u32; N]]);

/// The address test, then the port test, each left out when its list is empty. `ip_header_at`
/// (IPv4) loads the header's length into X before the port test.
fn hosts_then_ports<const N: usize>(
    asm: &mut Asm,
    (addresses, hosts): Test<'_, N>,
    ip_header_at: Option<u32>,
    (ports_at, ports): Test<'_, 1>,
    exits: &Exits<'_>,
) {
    let port_test = asm.label();
    if !hosts.is_empty() {
        let passed = if ports.is_empty() {
            exits.keep
        } else {
            &port_test
        };
        match_any(asm, addresses, hosts, passed, exits.reject);
    }
    asm.bind(port_test);
    if !ports.is_empty() {
        if let Some(at) = ip_header_at {
            asm.ldx_ipv4_header_len(at);
        }
        match_any(asm, ports_at, ports, exits.keep, exits.reject);
    }
}

/// Jumps to `hit` when the field at any of `sides` equals any of `values`, to `miss` when none
/// does. A value of N words (an IPv6 address) is compared word by word, each after its own load.
fn match_any<const N: usize>(
    asm: &mut Asm,
    sides: &[[Load; N]],
    values: &[[u32; N]],
    hit: &Label,
    miss: &Label,
) {
    // What A holds, so one load serves a whole run of one-word compares.
    let mut held = None;
    let last = sides.len() * values.len();
    let mut count = 0;
    for side in sides {
        for value in values {
            count += 1;
            let next_value = asm.label();
            let mismatch = if count == last {
                Jump::To(miss)
            } else {
                Jump::To(&next_value)
            };
            for (word, (load, expected)) in side.iter().zip(value).enumerate() {
                if held != Some(*load) {
                    asm.load(*load);
                    held = Some(*load);
                }
                let matched = if word + 1 == N {
                    Jump::To(hit)
                } else {
                    Jump::Next
                };
                asm.jeq(*expected, matched, mismatch);
            }
            asm.bind(next_value);
            // A multi-word value's mismatches come from any of its words: A is not known here.
            if N > 1 {
                held = None;
            }
        }
    }
}

/// A load into A (absolute or relative to X).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    code: u16,
    k: u32,
}

impl Load {
    /// `ld [k]`.
    const fn word(k: u32) -> Self {
        Self { code: LD_W_ABS, k }
    }

    /// `ldh [k]`.
    const fn half(k: u32) -> Self {
        Self { code: LD_H_ABS, k }
    }

    /// `ldb [k]`.
    const fn byte(k: u32) -> Self {
        Self { code: LD_B_ABS, k }
    }

    /// `ldh [x + k]`.
    const fn half_x(k: u32) -> Self {
        Self { code: LD_H_IND, k }
    }
}

/// A place in the program that jumps name before it is reached.
///
/// Not `Clone`, and [`Asm::bind`] takes it by value: a label can only be jumped to before it is
/// bound, so every jump is forward, as classic BPF requires.
#[derive(Debug)]
struct Label(usize);

/// Where one branch of a conditional jump goes.
#[derive(Debug, Clone, Copy)]
enum Jump<'l> {
    /// The next instruction.
    Next,
    /// A label.
    To(&'l Label),
}

/// A branch as the assembler keeps it: a label's number, so a trampoline can take its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    Next,
    To(usize),
}

impl From<Jump<'_>> for Branch {
    fn from(jump: Jump<'_>) -> Self {
        match jump {
            Jump::Next => Self::Next,
            Jump::To(label) => Self::To(label.0),
        }
    }
}

/// One entry of the program being assembled.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// An instruction without a jump.
    Plain(Insn),
    /// A conditional jump.
    If {
        code: u16,
        k: u32,
        jt: Branch,
        jf: Branch,
    },
    /// `ja` to a label.
    Ja(usize),
    /// Where a label is: takes no room.
    Bind(usize),
}

/// A small classic BPF assembler: instructions with symbolic forward jumps, resolved by
/// [`Asm::finish`].
#[derive(Debug, Default)]
struct Asm {
    ops: Vec<Op>,
    labels: usize,
    /// The trampolines added so far: the label bound at each, and where its `ja` goes.
    trampolines: Vec<(usize, usize)>,
    /// The label after each island of trampolines (see [`Asm::add_trampoline`]).
    islands: Vec<usize>,
}

/// Addresses of a program being assembled.
struct Layout {
    /// The address of each op (a `Bind` has the address of the instruction after it), and the
    /// program's length at the end.
    op: Vec<usize>,
    /// Each label's address; one past the end for a label never bound.
    label: Vec<usize>,
}

impl Layout {
    fn len(&self) -> usize {
        self.op.last().copied().unwrap_or(0)
    }
}

/// A conditional branch that cannot reach its label.
struct Far {
    /// The jump's op.
    op: usize,
    /// The true branch (else the false one).
    taken: bool,
    /// Its label.
    label: usize,
}

impl Asm {
    /// A new label, to bind later.
    fn label(&mut self) -> Label {
        Label(self.new_label())
    }

    fn new_label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }

    /// Places `label` at the next instruction.
    fn bind(&mut self, label: Label) {
        self.ops.push(Op::Bind(label.0));
    }

    fn plain(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Plain(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    fn load(&mut self, load: Load) {
        self.plain(load.code, load.k);
    }

    /// `ldxb 4*([k]&0xf)`.
    fn ldx_ipv4_header_len(&mut self, k: u32) {
        self.plain(LDX_B_MSH, k);
    }

    /// `and #k`.
    fn and(&mut self, k: u32) {
        self.plain(ALU_AND_K, k);
    }

    /// `ret #k`.
    fn ret(&mut self, k: u32) {
        self.plain(RET_K, k);
    }

    /// `jeq #k`.
    fn jeq(&mut self, k: u32, jt: Jump<'_>, jf: Jump<'_>) {
        self.jump_if(JMP_JEQ_K, k, jt, jf);
    }

    /// `jset #k`.
    fn jset(&mut self, k: u32, jt: Jump<'_>, jf: Jump<'_>) {
        self.jump_if(JMP_JSET_K, k, jt, jf);
    }

    fn jump_if(&mut self, code: u16, k: u32, jt: Jump<'_>, jf: Jump<'_>) {
        self.ops.push(Op::If {
            code,
            k,
            jt: jt.into(),
            jf: jf.into(),
        });
    }

    /// The instructions, every label resolved.
    ///
    /// Each round lays the program out and encodes it, sending branches that cannot reach their
    /// label through a trampoline already in reach; the first one with none gets a new
    /// trampoline, which moves what follows, and the next round starts over.
    ///
    /// # Errors
    /// [`FilterError::TooLong`] when the program, trampolines included, exceeds [`MAX_INSNS`].
    fn finish(mut self) -> Result<Vec<Insn>, FilterError> {
        loop {
            let layout = self.layout();
            // Trampolines only add instructions: once over, stop.
            if layout.len() > MAX_INSNS {
                return Err(FilterError::TooLong {
                    insns: layout.len(),
                });
            }
            match self.encode(&layout) {
                Ok(insns) => return Ok(insns),
                Err(far) => self.add_trampoline(&far, &layout),
            }
        }
    }

    fn layout(&self) -> Layout {
        let mut op = Vec::with_capacity(self.ops.len() + 1);
        let mut label = vec![None; self.labels];
        let mut address = 0;
        for entry in &self.ops {
            op.push(address);
            match entry {
                Op::Bind(id) => label[*id] = Some(address),
                Op::Plain(_) | Op::If { .. } | Op::Ja(_) => address += 1,
            }
        }
        op.push(address);
        // An unbound label points past the end: a jump there is one the kernel refuses, so the
        // mistake shows at attach time (and in the tests) rather than as a wrong filter.
        let label = label.into_iter().map(|at| at.unwrap_or(address)).collect();
        Layout { op, label }
    }

    /// The instructions, or the first conditional branch that cannot reach its label nor a
    /// trampoline to it. Branches redirected to trampolines on the way keep the layout.
    fn encode(&mut self, layout: &Layout) -> Result<Vec<Insn>, Far> {
        let mut insns = Vec::with_capacity(layout.len());
        for index in 0..self.ops.len() {
            let next = layout.op[index] + 1;
            // Labels are bound after every jump to them (see `Label`), so this never saturates.
            let distance = |label: usize| layout.label[label].saturating_sub(next);
            match self.ops[index] {
                Op::Plain(insn) => insns.push(insn),
                Op::If { code, k, jt, jf } => {
                    let jt = self.offset(layout, index, jt, true)?;
                    let jf = self.offset(layout, index, jf, false)?;
                    insns.push(Insn { code, jt, jf, k });
                }
                Op::Ja(label) => insns.push(Insn {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    // At most MAX_INSNS (checked before), so it fits.
                    k: u32::try_from(distance(label)).unwrap_or(u32::MAX),
                }),
                Op::Bind(_) => {}
            }
        }
        Ok(insns)
    }

    /// The 8-bit offset of one branch of the conditional jump at op `index`, through a
    /// trampoline in reach when its label is too far.
    fn offset(
        &mut self,
        layout: &Layout,
        index: usize,
        branch: Branch,
        taken: bool,
    ) -> Result<u8, Far> {
        let Branch::To(label) = branch else {
            return Ok(0);
        };
        let next = layout.op[index] + 1;
        let short = |label: usize| u8::try_from(layout.label[label].saturating_sub(next)).ok();
        if let Some(offset) = short(label) {
            return Ok(offset);
        }
        // A trampoline this branch went through in an earlier round may have been pushed out of
        // reach since: start again from where it leads (trampolines never lead to trampolines).
        let label = self
            .trampolines
            .iter()
            .find(|(at, _)| *at == label)
            .map_or(label, |(_, to)| *to);
        let destination = layout.label[label];
        let reusable = self.trampolines.iter().find(|(at, to)| {
            layout.label[*to] == destination && layout.label[*at] >= next && short(*at).is_some()
        });
        let via = reusable.map_or(label, |(at, _)| *at);
        match short(via) {
            Some(offset) => {
                self.redirect(index, taken, via);
                Ok(offset)
            }
            None => Err(Far {
                op: index,
                taken,
                label,
            }),
        }
    }

    /// Points one branch of the conditional jump at op `index` at `label`.
    fn redirect(&mut self, index: usize, taken: bool, label: usize) {
        if let Some(Op::If { jt, jf, .. }) = self.ops.get_mut(index) {
            let branch = if taken { jt } else { jf };
            *branch = Branch::To(label);
        }
    }

    /// Sends `far` through a new `ja` (a trampoline) in its reach.
    ///
    /// Trampolines sit in islands: a `ja` over the island, then the trampolines. A new one goes
    /// at the end of an island in reach, which moves no trampoline a jump already relies on;
    /// else a new island starts as far ahead as the jump reaches, less room for a few more
    /// trampolines, so the jumps that follow to the same place share it.
    fn add_trampoline(&mut self, far: &Far, layout: &Layout) {
        let next = layout.op[far.op] + 1;
        let reach = next + MAX_JUMP;
        let here = self.new_label();
        let island_end = (self.islands.iter())
            .filter(|over| (next..=reach).contains(&layout.label[**over]))
            .max_by_key(|over| layout.label[**over])
            .and_then(|over| {
                (self.ops.iter()).position(|op| matches!(op, Op::Bind(bound) if bound == over))
            });
        if let Some(index) = island_end {
            self.ops
                .splice(index..index, [Op::Bind(here), Op::Ja(far.label)]);
        } else {
            let mut start = far.op + 1;
            for index in far.op + 1..=self.ops.len() {
                if layout.op[index] + ISLAND_ROOM > reach {
                    break;
                }
                // Before the labels bound at an address, so they keep their instruction.
                if !matches!(self.ops.get(index - 1), Some(Op::Bind(_))) {
                    start = index;
                }
            }
            let over = self.new_label();
            self.ops.splice(
                start..start,
                [
                    Op::Ja(over),
                    Op::Bind(here),
                    Op::Ja(far.label),
                    Op::Bind(over),
                ],
            );
            self.islands.push(over);
        }
        self.trampolines.push((here, far.label));
        self.redirect(far.op, far.taken, here);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbound_label_points_past_the_end() {
        let mut asm = Asm::default();
        let nowhere = asm.label();
        asm.jeq(1, Jump::To(&nowhere), Jump::Next);
        asm.ret(0);
        let insns = asm.finish().unwrap();
        assert_eq!(insns[0].jt, 1, "pc 0 + 1 + 1 = 2 = len: out of range");
    }

    /// Where a branch from `pc` with `offset` finally lands, through `ja`s.
    fn land(insns: &[Insn], pc: usize, offset: u8) -> usize {
        let mut at = pc + 1 + usize::from(offset);
        while insns[at].code == JMP_JA {
            at += 1 + insns[at].k as usize;
        }
        at
    }

    #[test]
    fn both_branches_far() {
        let mut asm = Asm::default();
        let (first, second) = (asm.label(), asm.label());
        asm.jeq(1, Jump::To(&first), Jump::To(&second));
        for _ in 0..300 {
            asm.load(Load::byte(0));
        }
        asm.bind(first);
        asm.ret(1);
        for _ in 0..300 {
            asm.load(Load::byte(0));
        }
        asm.bind(second);
        asm.ret(2);
        let insns = asm.finish().unwrap();
        // One island: the `ja` over it and a trampoline for each branch.
        assert_eq!(insns.len(), 603 + 3);
        assert_eq!(insns[land(&insns, 0, insns[0].jt)].k, 1);
        assert_eq!(insns[land(&insns, 0, insns[0].jf)].k, 2);
        assert!(
            insns
                .iter()
                .filter(|insn| insn.code == JMP_JA)
                .all(|insn| insn.k as usize + 1 < insns.len())
        );
    }
}
