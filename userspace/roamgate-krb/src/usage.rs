//! Key usage numbers, RFC 4120 §7.5.1. Named after the spec's own terms.

pub const AS_REQ_PA_ENC_TIMESTAMP: u32 = 1;
pub const KDC_REP_TICKET: u32 = 2;
pub const AS_REP_ENC_PART: u32 = 3;
pub const TGS_REQ_AUTHDATA_SESSION_KEY: u32 = 4;
pub const TGS_REQ_AUTHDATA_SUBKEY: u32 = 5;
pub const TGS_REQ_PA_TGS_REQ_CKSUM: u32 = 6;
pub const TGS_REQ_PA_TGS_REQ_AUTHENTICATOR: u32 = 7;
pub const TGS_REP_ENC_PART_SESSION_KEY: u32 = 8;
pub const TGS_REP_ENC_PART_SUBKEY: u32 = 9;
pub const AP_REQ_AUTHENTICATOR_CKSUM: u32 = 10;
pub const AP_REQ_AUTHENTICATOR: u32 = 11;
pub const AP_REP_ENC_PART: u32 = 12;
pub const KRB_PRIV_ENC_PART: u32 = 13;
pub const KRB_CRED_ENC_PART: u32 = 14;
pub const KRB_SAFE_CKSUM: u32 = 15;
