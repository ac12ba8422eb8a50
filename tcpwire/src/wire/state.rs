//! Wire codes: TCP states and timer kinds as open newtypes, and the row layouts they imply.

use core::fmt;

/// A TCP state code as the kernel prints it (`include/net/tcp_states.h`).
///
/// Open: codes this crate has no name for (such as a future kernel's) are kept as they are, never
/// an error and never folded into a known state.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TcpState(pub u8);

impl TcpState {
    /// `01`.
    pub const ESTABLISHED: Self = Self(0x01);
    /// `02`.
    pub const SYN_SENT: Self = Self(0x02);
    /// `03`: a full socket (TCP Fast Open child) or, in the short layout, a request socket.
    pub const SYN_RECV: Self = Self(0x03);
    /// `04`.
    pub const FIN_WAIT1: Self = Self(0x04);
    /// `05`: a full socket, or an orphaned one turned into a TIME_WAIT minisocket.
    pub const FIN_WAIT2: Self = Self(0x05);
    /// `06`.
    pub const TIME_WAIT: Self = Self(0x06);
    /// `07`.
    pub const CLOSE: Self = Self(0x07);
    /// `08`.
    pub const CLOSE_WAIT: Self = Self(0x08);
    /// `09`.
    pub const LAST_ACK: Self = Self(0x09);
    /// `0A`.
    pub const LISTEN: Self = Self(0x0A);
    /// `0B`.
    pub const CLOSING: Self = Self(0x0B);
    /// `0C`: kernel-internal request-socket state; `/proc` and `inet_diag` print it as `03`.
    pub const NEW_SYN_RECV: Self = Self(0x0C);
    /// `0D`: the `inet_diag` pseudo-state for bound, inactive sockets (recent 6.x kernels).
    pub const BOUND_INACTIVE: Self = Self(0x0D);

    /// The `state` label node_exporter gives this code, for the eleven states it knows.
    pub const fn node_exporter_label(self) -> Option<&'static str> {
        Some(match self.0 {
            0x01 => "established",
            0x02 => "syn_sent",
            0x03 => "syn_recv",
            0x04 => "fin_wait1",
            0x05 => "fin_wait2",
            0x06 => "time_wait",
            0x07 => "close",
            0x08 => "close_wait",
            0x09 => "last_ack",
            0x0A => "listen",
            0x0B => "closing",
            _ => return None,
        })
    }

    /// The kernel's name for this code (`TCP_ESTABLISHED` without the prefix), if it has one.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x01 => "ESTABLISHED",
            0x02 => "SYN_SENT",
            0x03 => "SYN_RECV",
            0x04 => "FIN_WAIT1",
            0x05 => "FIN_WAIT2",
            0x06 => "TIME_WAIT",
            0x07 => "CLOSE",
            0x08 => "CLOSE_WAIT",
            0x09 => "LAST_ACK",
            0x0A => "LISTEN",
            0x0B => "CLOSING",
            0x0C => "NEW_SYN_RECV",
            0x0D => "BOUND_INACTIVE",
            _ => return None,
        })
    }
}

impl fmt::Debug for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "TcpState({:#04x})", self.0),
        }
    }
}

impl fmt::Display for TcpState {
    /// The two uppercase hex digits the kernel prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}", self.0)
    }
}

/// The `tr` column: which timer is pending on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimerKind(pub u8);

impl TimerKind {
    /// `0`: no timer pending.
    pub const NONE: Self = Self(0);
    /// `1`: retransmit, RTO, tail-loss probe or reordering timer (SYN-ACK timer for request sockets).
    pub const RETRANSMIT: Self = Self(1);
    /// `2`: `sk_timer` (keepalive, FIN_WAIT2 timeout).
    pub const KEEPALIVE: Self = Self(2);
    /// `3`: the TIME_WAIT timer of a minisocket.
    pub const TIME_WAIT: Self = Self(3);
    /// `4`: zero-window probe.
    pub const ZERO_WINDOW_PROBE: Self = Self(4);
}

/// Which of the kernel's three printers produced a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RowKind {
    /// `get_tcp{4,6}_sock`: a full socket (17 columns on current kernels).
    Full,
    /// `get_timewait{4,6}_sock`: a TIME_WAIT minisocket (state `06`, or `05` for an orphaned
    /// FIN_WAIT2), 12 columns.
    TimeWait,
    /// `get_openreq{4,6}`: a request socket (`TCP_NEW_SYN_RECV`, printed as `03`), 12 columns.
    Request,
}

impl RowKind {
    /// Tells the printer apart from what a row shows: full rows carry the five TCP-state
    /// columns; of the short rows, `03` with the retransmit timer is a request socket and `06`,
    /// or `05` with the TIME_WAIT timer, a minisocket. A short row in any other state comes from
    /// an old kernel's full-socket printer without the tail.
    pub const fn classify(state: TcpState, timer: TimerKind, has_tail: bool) -> Self {
        if has_tail {
            return Self::Full;
        }
        match (state, timer) {
            (TcpState::TIME_WAIT, _) | (TcpState::FIN_WAIT2, TimerKind::TIME_WAIT) => {
                Self::TimeWait
            }
            (TcpState::SYN_RECV, TimerKind::RETRANSMIT) => Self::Request,
            _ => Self::Full,
        }
    }

    /// Whether [`RowKind::classify`] needs to know if the row has the TCP-state tail: only for the
    /// states whose short layouts mean something else. Lets counters skip scanning other rows.
    pub const fn tail_matters(state: TcpState) -> bool {
        matches!(
            state,
            TcpState::TIME_WAIT | TcpState::FIN_WAIT2 | TcpState::SYN_RECV
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_exporter_label_belongs_to_one_code() {
        let labelled: Vec<u8> = (0..=255u8)
            .filter(|c| TcpState(*c).node_exporter_label().is_some())
            .collect();
        assert_eq!(labelled, (1..=11).collect::<Vec<u8>>());
        assert_eq!(TcpState(0x0D).node_exporter_label(), None);
        assert_eq!(
            format!("{:?} {}", TcpState(0x0A), TcpState(0x0A)),
            "LISTEN 0A"
        );
        assert_eq!(format!("{:?}", TcpState(0xEE)), "TcpState(0xee)");
    }

    #[test]
    fn row_kinds_follow_the_kernel_printers() {
        use RowKind::*;
        let k = RowKind::classify;
        assert_eq!(k(TcpState::SYN_RECV, TimerKind::RETRANSMIT, false), Request);
        assert_eq!(k(TcpState::SYN_RECV, TimerKind::RETRANSMIT, true), Full);
        assert_eq!(
            k(TcpState::TIME_WAIT, TimerKind::TIME_WAIT, false),
            TimeWait
        );
        assert_eq!(
            k(TcpState::FIN_WAIT2, TimerKind::TIME_WAIT, false),
            TimeWait
        );
        assert_eq!(k(TcpState::FIN_WAIT2, TimerKind::KEEPALIVE, true), Full);
        assert_eq!(k(TcpState::ESTABLISHED, TimerKind::NONE, false), Full);
    }
}
