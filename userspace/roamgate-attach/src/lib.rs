//! The attach protocol of roamgate (docs/attach.md): how a unit switches
//! on, off, and asks for its proxy's status, through its base station, at
//! the proxy manager of a domain.
//!
//! Sans-IO, in the style of `roamgate-mip`:
//! - [`wire`]: the frames (unit frames and the base station's relay
//!   envelope), smoltcp style, with typed errors;
//! - [`unit`]: the unit's core, which builds its requests from Kerberos
//!   credentials and checks the proxy manager's answers (mutual
//!   authentication);
//! - [`manager`]: the proxy manager's verification of a switch-on (AP-REQ,
//!   replay cache, forwarded TGT in a KRB-CRED) and of later requests;
//! - [`proxy_manager`]: the proxy manager's protocol core (switch-on to
//!   running proxy, switch-off, status, silence, retries, limits);
//! - [`relay`]: the base station's core;
//! - [`state`]: the unit's state file (identity code and long-term keys).
//!
//! The Kerberos pieces are `roamgate-krb`'s (AP-REQ/AP-REP, KRB-CRED,
//! KRB-PRIV, the replay cache); this crate only frames and binds them.

pub mod manager;
pub mod proxy_manager;
pub mod proxy_op;
pub mod relay;
pub mod state;
pub mod unit;
pub mod wire;

pub use manager::{Refusal, Verified, Verifier, VerifyError};
pub use proxy_manager::{ManagerConfig, ProxyManager};
pub use relay::BaseStation;
pub use unit::{Unit, UnitCredentials, UnitError, UnitEvent};

#[cfg(test)]
mod proxy_manager_tests;
#[cfg(test)]
mod tests;
