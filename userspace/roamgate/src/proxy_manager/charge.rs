//! The caller's proxy charges its unit's calls (ARCHITECTURE.md flow 8,
//! docs/billing.md): it opens the charge when the unit reports the
//! caller's CONNECT, before any media, and closes it at the release, at
//! the billing service, with a ticket for that service in the subscriber's
//! name (the proxy's copy of the forwarded TGT). The service takes the
//! account from the ticket's client principal, never from the request.
//!
//! An unanswered request is sent again, fresh (a new authenticator, which
//! the service's replay cache lets in): the ledger keys the charge by the
//! call's id, so a retry never charges twice.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant, SystemTime},
};

use roamgate_billing::{
    client::{build_request, ClientError as BillingError},
    wire::{Op, OpResult, Reason},
};
use roamgate_krb::{client::Credential, Principal};
use tokio::net::UdpSocket;

use super::ticket::{self, Servers, TicketCache};

/// Requests sent for one operation before the proxy gives up.
pub const ATTEMPTS: u32 = 3;
/// How long one request waits for its answer.
pub const WAIT: Duration = Duration::from_millis(1000);
/// Largest billing answer read.
const MAX_ANSWER: usize = 4096;

/// Q.850 causes of a call that cannot be charged.
const CAUSE_NOT_AUTHORISED: u8 = 57;
const CAUSE_TEMPORARY_FAILURE: u8 = 41;

/// Where charges go.
#[derive(Debug, Clone)]
pub struct Billing {
    pub address: SocketAddr,
    pub service: Principal,
}

#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error(
        "no ticket for the billing service {service}: {source} (is the principal in the KDC?)"
    )]
    Ticket {
        service: Principal,
        source: roamgate_krb::client::ClientError,
    },
    #[error("the billing service at {0} did not answer {1} requests (is `roamgate billing serve` running there?)")]
    NoAnswer(SocketAddr, u32),
    #[error("billing request: {0}")]
    Client(#[from] BillingError),
    #[error("the billing service refused: {0}")]
    Refused(Reason),
    #[error("talking to the billing service: {0}")]
    Io(#[from] std::io::Error),
}

impl ChargeError {
    /// The cause the caller's call is released with: the subscriber may
    /// not call (no account, funds, credit), or the charge could not be
    /// made now.
    pub fn q850_cause(&self) -> u8 {
        match self {
            Self::Refused(
                Reason::NoAccount
                | Reason::NoTariff
                | Reason::InsufficientFunds
                | Reason::CreditLimit
                | Reason::NotYourCall,
            ) => CAUSE_NOT_AUTHORISED,
            _ => CAUSE_TEMPORARY_FAILURE,
        }
    }
}

/// One charge operation at the billing service in the name of `tgt`'s
/// client. `Ok` is what the ledger did (opened, closed, or already so);
/// a refusal is an error.
pub async fn charge(
    servers: &Servers,
    billing: &Billing,
    tgt: &Credential,
    cache: &TicketCache,
    op: Op,
) -> Result<OpResult, ChargeError> {
    let cred = ticket::service_ticket(servers, tgt, cache, &billing.service)
        .await
        .map_err(|source| ChargeError::Ticket {
            service: billing.service.clone(),
            source,
        })?;
    let sock = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await?;
    sock.connect(billing.address).await?;
    let mut buf = vec![0u8; MAX_ANSWER];
    for _ in 0..ATTEMPTS {
        let (bytes, pending) = build_request(&cred, op, SystemTime::now())?;
        // A send refused by an earlier ICMP error is one more lost attempt.
        let _ = sock.send(&bytes).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, sock.recv(&mut buf)).await {
                Err(_) => break,
                // ICMP port unreachable: the service is down; wait out
                // this attempt rather than spin.
                Ok(Err(_)) => {
                    tokio::time::sleep(left).await;
                    break;
                }
                Ok(Ok(n)) => match pending.open(&buf[..n], SystemTime::now()) {
                    Ok(OpResult::Refused { reason }) => return Err(ChargeError::Refused(reason)),
                    Ok(done) => return Ok(done),
                    Err(BillingError::Refused(Reason::Unavailable)) => break,
                    Err(BillingError::Refused(reason)) => return Err(ChargeError::Refused(reason)),
                    // A late answer to an earlier attempt, or noise.
                    Err(e) => tracing::debug!(error = %e, "billing answer ignored"),
                },
            }
        }
    }
    Err(ChargeError::NoAnswer(billing.address, ATTEMPTS))
}
