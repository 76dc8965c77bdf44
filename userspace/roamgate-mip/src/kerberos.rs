//! The Kerberos AP-REQ in a registration and the tunnel key derived from it
//! (docs/mobile-ip.md, "Kerberos CVSE" and "Tunnel master key").
//!
//! A thin adapter over `roamgate_krb::ap`: the mobile node builds an AP-REQ
//! with a fresh subkey whose authenticator checksum covers the 24-byte
//! fixed part of the registration (so the AP-REQ is bound to that
//! Identification), and carries it in an RFC 3115 CVSE. The home agent
//! verifies it with its service key and replay cache. Both then derive the
//! tunnel master key and the tunnel SPI from the subkey and the
//! registration's Identification ([`crate::tunnel_key::derive_tunnel`]).

use std::time::{Duration, SystemTime};

use roamgate_krb::ap::{self, AcceptParams, Accepted, ApClient, ApError, ApReqParams, ServiceKeys};
use roamgate_krb::client::Credential;
use roamgate_krb::replay::ReplayCache;
use roamgate_krb::Principal;

/// The Vendor/Organization-ID of roamgate's CVSEs: 32473, the IANA
/// enterprise number reserved for documentation (RFC 5612) until roamgate
/// has a number of its own. Replace it in one place when it does.
pub const ROAMGATE_VENDOR_ID: u32 = 32473;
/// Vendor-CVSE-Type of the Kerberos AP-REQ CVSE (Registration Request).
pub const CVSE_KRB_AP_REQ: u16 = 1;

/// The AP-REQ authenticator skew limit (RFC 4120, roamgate-wide).
pub const AP_REQ_SKEW: Duration = Duration::from_secs(300);

/// Builds the AP-REQ for a registration whose fixed part is `header`: a
/// fresh subkey, no mutual authentication, the authenticator checksum over
/// `header`.
pub fn build_registration_ap_req(
    cred: &Credential,
    header: &[u8],
    now: SystemTime,
) -> Result<(Vec<u8>, ApClient), ApError> {
    ap::build_ap_req(
        cred,
        &ApReqParams {
            mutual: false,
            subkey: true,
            seq_number: None,
            app_data: Some(header),
        },
        now,
    )
}

/// Verifies a registration's AP-REQ: ticket for `service`, authenticator
/// within 300 s, not replayed, checksum over `header`.
pub fn verify_registration_ap_req<K: ServiceKeys + ?Sized>(
    ap_req: &[u8],
    keys: &K,
    service: Option<&Principal>,
    header: &[u8],
    replay: &mut ReplayCache,
    now: SystemTime,
) -> Result<Accepted, ApError> {
    ap::accept_ap_req(
        ap_req,
        keys,
        &AcceptParams {
            service,
            app_data: Some(header),
            skew: AP_REQ_SKEW,
        },
        replay,
        now,
    )
}
