//! The "telephone directory" of ARCHITECTURE.md: per identity code, the
//! initiating information a proxy manager needs to start a unit's proxy.

pub mod identity;

pub use identity::IdentityCode;
