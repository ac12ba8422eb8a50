//! Tier 1: stateless parsers and encoders over borrowed bytes. Nothing here allocates or panics.

pub(crate) mod netlink;
pub(crate) mod row;
pub(crate) mod sockstat;
pub(crate) mod state;
pub(crate) mod token;
