//! Strict by default; each leniency is a named switch.

/// Which `tracestate` key grammar to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyGrammar {
    /// W3C Level 3 (current): `[a-z0-9][a-z0-9_\-*/@]{0,255}`.
    #[default]
    Level3,
    /// W3C Level 1: `simple-key` or `tenant@system` with the Level 1 length limits.
    Level1,
}

/// What to do with an invalid single `b3` header next to a valid multi-header set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InvalidB3Single {
    /// Use the multi headers, as Brave and opentelemetry do.
    #[default]
    FallBackToMulti,
    /// Fail the extraction, as Envoy does (it starts no span).
    FailClosed,
}

/// How extraction reads headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Accept uppercase hex in ids (Envoy's `strtoull` does; the specs do not). Off.
    pub uppercase_hex: bool,
    /// Accept `true`/`false` (any case) in `X-B3-Sampled`, the legacy values the b3 spec says a
    /// lenient implementation may accept and Brave does. On, as the shared vectors expect; never in
    /// the single `b3` header.
    pub b3_sampled_true_false: bool,
    /// Invalid single `b3` next to valid multi headers.
    pub invalid_b3_single: InvalidB3Single,
    /// `tracestate` key grammar.
    pub tracestate_keys: KeyGrammar,
    /// Baggage members read before the rest are dropped (whole members only; the spec's minimum 64).
    pub max_baggage_members: u16,
    /// Baggage bytes, all fields together, read before the rest is dropped (minimum 8192).
    pub max_baggage_bytes: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            uppercase_hex: false,
            b3_sampled_true_false: true,
            invalid_b3_single: InvalidB3Single::FallBackToMulti,
            tracestate_keys: KeyGrammar::Level3,
            max_baggage_members: 64,
            max_baggage_bytes: 8192,
        }
    }
}

impl Config {
    /// Every leniency off.
    pub fn strict() -> Self {
        Self {
            b3_sampled_true_false: false,
            ..Self::default()
        }
    }

    /// Sets [`Config::uppercase_hex`].
    pub const fn uppercase_hex(mut self, on: bool) -> Self {
        self.uppercase_hex = on;
        self
    }

    /// Sets [`Config::b3_sampled_true_false`].
    pub const fn b3_sampled_true_false(mut self, on: bool) -> Self {
        self.b3_sampled_true_false = on;
        self
    }

    /// Sets [`Config::invalid_b3_single`].
    pub const fn invalid_b3_single(mut self, rule: InvalidB3Single) -> Self {
        self.invalid_b3_single = rule;
        self
    }

    /// Sets [`Config::tracestate_keys`].
    pub const fn tracestate_keys(mut self, grammar: KeyGrammar) -> Self {
        self.tracestate_keys = grammar;
        self
    }

    /// Sets the baggage limits.
    pub const fn baggage_limits(mut self, members: u16, bytes: u16) -> Self {
        self.max_baggage_members = members;
        self.max_baggage_bytes = bytes;
        self
    }
}
