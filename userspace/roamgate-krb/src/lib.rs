//! Kerberos V5 (RFC 4120) for roamgate: messages, the KDC, the client and
//! service side, keytabs and credential caches.

pub mod ap;
pub mod ccache;
pub mod cli;
pub mod client;
pub mod cred;
pub mod credential;
pub mod kdc;
pub mod keytab;
pub mod messages;
mod mit_file;
pub mod principal;
pub mod priv_safe;
pub mod replay;
#[cfg(test)]
mod test_support;
pub mod usage;

pub use principal::Principal;
