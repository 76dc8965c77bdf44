//! Calls between proxies (ARCHITECTURE.md flow 7), sans-IO:
//! - [`call`]: the state machine of one call, at either end;
//! - [`wire`]: TPKT, Q.931 and the H.225.0 subset (aligned PER via rasn),
//!   with the H.235 hashed token that protects each message;
//! - [`handshake`]: the call's Kerberos AP exchange and every key a call
//!   uses (signalling integrity, SRTP master keys), derived from both
//!   sides' subkeys;
//! - [`signalling`]: the state machine's signals to and from the wire
//!   bytes, signed and checked;
//! - [`media`]: G.711, RTP packets of 20 ms, and RFC 3550 statistics.

pub mod call;
pub mod handshake;
pub mod media;
pub mod signalling;
pub mod wire;

#[cfg(test)]
mod test_realm;
