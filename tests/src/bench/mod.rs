//! `cargo xtask bench`: each section measures one part side by side with its
//! baseline in the same run and returns a JSON object under its own key.

pub mod billing;
pub mod call_setup;
pub mod dataplane;
pub mod ha_restore;
pub mod kdc;
pub mod mobility;
pub mod srtp;
pub mod switch_on;

pub type Section = fn() -> anyhow::Result<serde_json::Value>;

/// (JSON key, runner). Sections whose key is empty merge into the top level.
pub const SECTIONS: &[(&str, Section)] = &[
    ("", dataplane::run),
    ("kdc", kdc::run),
    ("mobility", mobility::run),
    ("ha_restore", ha_restore::run),
    ("switch_on", switch_on::run),
    ("srtp", srtp::run),
    ("call_setup", call_setup::run),
    ("billing", billing::run),
];
