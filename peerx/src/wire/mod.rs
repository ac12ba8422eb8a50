//! Tier 1: stateless parsers and encoders over borrowed bytes.

pub(crate) mod base64;
pub(crate) mod frame;
pub(crate) mod pb;
pub(crate) mod structure;
