//! The call signalling wire formats, sans-IO:
//! - [`tpkt`]: RFC 1006 framing on the TCP connection (port 1720);
//! - [`q931`]: the Q.931 message with the information elements H.225.0 uses;
//! - [`h245`]: the H.245 OpenLogicalChannel subset carried in fastStart;
//! - [`h225`]: the H323-UserInformation subset (aligned PER via rasn) and
//!   [`CallMessage`], the plain representation of one whole message;
//! - [`h235`]: the H.235.1 style hashed token that protects each message, and
//!   the ClearToken that carries the Kerberos AP-REQ / AP-REP.
//!
//! Every parser returns a typed [`Error`]; none panics on any input.

pub mod h225;
pub mod h235;
pub mod h245;
pub mod q931;
pub mod tpkt;

pub use h225::{CallMessage, Channel, Codec, MessageBody, ReleaseReason};
pub use h235::{Integrity, TokenFields};

/// The H.225.0 call signalling TCP port.
pub const CALL_SIGNALLING_PORT: u16 = 1720;

/// The largest message (TPKT header included) roamgate builds or accepts.
/// A SETUP with two fastStart proposals, the hashed token and a Kerberos
/// AP-REQ is well under 2 KiB.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Why a call signalling message could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("message truncated")]
    Truncated,
    #[error("message of {0} bytes is over the {MAX_MESSAGE_LEN}-byte cap")]
    Oversized(usize),
    #[error("TPKT version {0}, expected 3")]
    TpktVersion(u8),
    #[error("TPKT length {length} does not match the {actual} bytes received")]
    TpktLength { length: usize, actual: usize },
    #[error("Q.931 protocol discriminator {0:#04x}, expected 0x08")]
    ProtocolDiscriminator(u8),
    #[error("Q.931 call reference of length {0}, expected 2")]
    CallReferenceLength(u8),
    #[error("unknown Q.931 message type {0:#04x}")]
    UnknownMessageType(u8),
    #[error("Q.931 information element {0:#04x} is malformed")]
    MalformedIe(u8),
    #[error("Q.931 information element {0:#04x} is too long to encode")]
    IeTooLong(u8),
    #[error("user-user protocol discriminator {0:#04x}, expected 0x05 (X.208/X.209 coded)")]
    UserUserDiscriminator(u8),
    #[error("no user-user information element (H323-UserInformation)")]
    MissingUserUser,
    #[error("H.225.0 body does not decode: {0}")]
    Decode(String),
    #[error("H.225.0 body does not encode: {0}")]
    Encode(String),
    #[error("the H.225.0 body ({body}) does not match the Q.931 message type ({q931})")]
    BodyMismatch {
        q931: &'static str,
        body: &'static str,
    },
    #[error("the H.225.0 message body is not one roamgate uses")]
    UnsupportedBody,
    #[error("required field {0} is missing")]
    MissingField(&'static str),
    #[error("field {0} has an invalid value")]
    InvalidField(&'static str),
    #[error("no H.235 hashed token in the message")]
    NoIntegrityToken,
    #[error("the H.235 hashed token has wrong object identifiers")]
    WrongTokenOid,
    #[error("the H.235 integrity check failed")]
    IntegrityFailed,
    #[error("the hash of the H.235 token is not octet-aligned in the message")]
    NotCanonical,
}
