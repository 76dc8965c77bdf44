//! KRB-ERROR codes (RFC 4120 §7.5.9) and the KDC's typed failures.
//!
//! Every way a request can fail is a [`KdcError`] variant named after what
//! failed; [`KdcError::code`] maps it to the protocol error code sent to the
//! client, and the `Display` text becomes the KRB-ERROR `e-text`. The text
//! never carries key material.

/// Error codes, named as in RFC 4120 §7.5.9 (shared with the client side).
pub use crate::messages::error_code as code;

/// Why the KDC refused a request. Each variant maps to one KRB-ERROR code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdcError {
    #[error("request is not valid DER for its message type")]
    MalformedRequest,
    #[error("protocol version {0} is not 5")]
    BadProtocolVersion(i64),
    #[error("msg-type {0} does not match the message")]
    WrongMessageType(i64),
    #[error("request names no client")]
    MissingClientName,
    #[error("request names no server")]
    MissingServerName,
    #[error("realm {0:?} is not served here")]
    WrongRealm(String),
    #[error("client principal unknown")]
    ClientUnknown,
    #[error("server principal unknown")]
    ServerUnknown,
    #[error("client principal is disabled")]
    ClientRevoked,
    #[error("server principal is disabled")]
    ServiceRevoked,
    #[error("no requested encryption type is supported")]
    EtypeNotSupported,
    #[error("checksum type {0} is not supported")]
    ChecksumTypeNotSupported(i32),
    #[error("pre-authentication required")]
    PreauthRequired,
    #[error("pre-authentication failed")]
    PreauthFailed,
    #[error("clock skew too great")]
    ClockSkew,
    #[error("ticket expired")]
    TicketExpired,
    #[error("ticket not yet valid")]
    TicketNotYetValid,
    #[error("requested end time lies before the start time")]
    NeverValid,
    #[error("ticket may not be postdated")]
    CannotPostdate,
    #[error("option not permitted: {0}")]
    BadOption(&'static str),
    #[error("policy rejects the request: {0}")]
    Policy(&'static str),
    #[error("TGS request carries no PA-TGS-REQ")]
    MissingApReq,
    #[error("ticket is not a ticket-granting ticket of this realm")]
    NotOurTgt,
    #[error("ticket or authenticator failed its integrity check")]
    BadIntegrity,
    #[error("ticket key version {0} is unknown")]
    BadKeyVersion(u32),
    #[error("authenticator names another client than the ticket")]
    ClientMismatch,
    #[error("request body checksum does not match")]
    Modified,
    #[error("authenticator checksum is missing or of the wrong type")]
    InappropriateChecksum,
    #[error("authenticator replayed")]
    Replay,
    #[error("the KDC is overloaded, try again")]
    Unavailable,
    #[error(
        "too many TGS requests from this client within the clock-skew window; \
         retry in a few minutes"
    )]
    ClientReplayQuota,
    #[error("the KDC's replay cache is full of live authenticators; retry in a few minutes")]
    ReplayCacheFull,
    #[error("principal database error")]
    Database,
    #[error("internal error")]
    Internal,
}

impl KdcError {
    /// The RFC 4120 error code for this failure.
    pub fn code(&self) -> i32 {
        use code::*;
        match self {
            KdcError::MalformedRequest => KRB_ERR_GENERIC,
            KdcError::BadProtocolVersion(_) => KDC_ERR_BAD_PVNO,
            KdcError::WrongMessageType(_) => KRB_AP_ERR_MSG_TYPE,
            KdcError::MissingClientName => KDC_ERR_C_PRINCIPAL_UNKNOWN,
            KdcError::MissingServerName => KDC_ERR_S_PRINCIPAL_UNKNOWN,
            // MIT answers KDC_ERR_WRONG_REALM (68, RFC 6806) only with
            // referrals; a plain KDC reports the server as unknown.
            KdcError::WrongRealm(_) => KDC_ERR_S_PRINCIPAL_UNKNOWN,
            KdcError::ClientUnknown => KDC_ERR_C_PRINCIPAL_UNKNOWN,
            KdcError::ServerUnknown => KDC_ERR_S_PRINCIPAL_UNKNOWN,
            KdcError::ClientRevoked => KDC_ERR_CLIENT_REVOKED,
            KdcError::ServiceRevoked => KDC_ERR_SERVICE_REVOKED,
            KdcError::EtypeNotSupported => KDC_ERR_ETYPE_NOSUPP,
            KdcError::ChecksumTypeNotSupported(_) => KDC_ERR_SUMTYPE_NOSUPP,
            KdcError::PreauthRequired => KDC_ERR_PREAUTH_REQUIRED,
            KdcError::PreauthFailed => KDC_ERR_PREAUTH_FAILED,
            KdcError::ClockSkew => KRB_AP_ERR_SKEW,
            KdcError::TicketExpired => KRB_AP_ERR_TKT_EXPIRED,
            KdcError::TicketNotYetValid => KRB_AP_ERR_TKT_NYV,
            KdcError::NeverValid => KDC_ERR_NEVER_VALID,
            KdcError::CannotPostdate => KDC_ERR_CANNOT_POSTDATE,
            KdcError::BadOption(_) => KDC_ERR_BADOPTION,
            KdcError::Policy(_) => KDC_ERR_POLICY,
            KdcError::MissingApReq => KDC_ERR_PADATA_TYPE_NOSUPP,
            KdcError::NotOurTgt => KRB_AP_ERR_NOT_US,
            KdcError::BadIntegrity => KRB_AP_ERR_BAD_INTEGRITY,
            KdcError::BadKeyVersion(_) => KRB_AP_ERR_BADKEYVER,
            KdcError::ClientMismatch => KRB_AP_ERR_BADMATCH,
            KdcError::Modified => KRB_AP_ERR_MODIFIED,
            KdcError::InappropriateChecksum => KRB_AP_ERR_INAPP_CKSUM,
            KdcError::Replay => KRB_AP_ERR_REPEAT,
            KdcError::Unavailable | KdcError::ClientReplayQuota | KdcError::ReplayCacheFull => {
                KDC_ERR_SVC_UNAVAILABLE
            }
            KdcError::Database => KRB_ERR_GENERIC,
            KdcError::Internal => KRB_ERR_GENERIC,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc4120() {
        assert_eq!(KdcError::ClientUnknown.code(), 6);
        assert_eq!(KdcError::ServerUnknown.code(), 7);
        assert_eq!(KdcError::EtypeNotSupported.code(), 14);
        assert_eq!(KdcError::PreauthFailed.code(), 24);
        assert_eq!(KdcError::PreauthRequired.code(), 25);
        assert_eq!(KdcError::TicketExpired.code(), 32);
        assert_eq!(KdcError::ClockSkew.code(), 37);
        assert_eq!(KdcError::Modified.code(), 41);
        assert_eq!(code::KRB_ERR_RESPONSE_TOO_BIG, 52);
    }
}
