//! The "telephone directory" of ARCHITECTURE.md: per identity code, the
//! initiating information a proxy manager needs to start a unit's proxy.

//!
//! Sans-IO, in the style of `roamgate-mip`: [`wire`] (the datagrams),
//! [`record`] (the initiating information and its encoding), [`store`]
//! (the [`DirectoryStore`] trait and its SQLite implementation),
//! [`server`] (the directory core: request bytes and a clock in, answer
//! bytes out) and [`client`] (the caller's side). The Kerberos pieces
//! (AP-REQ/AP-REP, KRB-PRIV, the replay cache) are `roamgate-krb`'s.
//! The protocol is specified in docs/directory.md.

pub mod client;
pub mod identity;
pub mod record;
pub mod server;
pub mod store;
pub mod wire;

pub use identity::IdentityCode;
pub use record::{call_principal, CallKey, DialledNumber, MipKey, Resolution, UnitRecord};
pub use server::{Directory, DirectoryConfig};
pub use store::{DirectoryStore, SqliteStore};
