//! KRB-CRED (RFC 4120 §3.6, §5.8): forwarding tickets, e.g. a unit's
//! forwarded TGT to the proxy manager.
//!
//! [`build_krb_cred`] puts credentials (tickets plus their session keys)
//! into a KRB-CRED whose EncKrbCredPart is encrypted in the key of an AP
//! exchange (key usage 14). [`open_krb_cred`] reverses it, checks the
//! timestamp against the skew limit and the replay cache, and returns the
//! credentials.

use std::time::{Duration, SystemTime};

use rasn_kerberos::{EncKrbCredPart, KrbCred, KrbCredInfo};
use roamgate_krb_crypto::Key;

use crate::credential::Credential;
use crate::messages::{self, decode, encode, flags_value, int, msg_type, MessageError, PVNO};
use crate::replay::{skew_between, AuthenticatorId, ReplayCache, ReplayError};
use crate::usage;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredError {
    #[error("malformed KRB-CRED: {0}")]
    Malformed(#[from] MessageError),
    #[error("wrong protocol version or message type in KRB-CRED")]
    BadVersion,
    #[error("KRB-CRED does not decrypt with the session key (modified, or wrong key)")]
    Integrity,
    #[error("KRB-CRED has {tickets} tickets but {infos} KrbCredInfo entries")]
    CountMismatch { tickets: usize, infos: usize },
    #[error("KrbCredInfo {0} lacks {1}")]
    MissingField(usize, &'static str),
    #[error("KRB-CRED carries no timestamp")]
    MissingTimestamp,
    #[error("clock skew too great: KRB-CRED time is {0} s from ours")]
    Skew(u64),
    #[error("replayed KRB-CRED")]
    Replay,
    #[error("replay cache full")]
    ReplayCacheFull,
    #[error("KRB-CRED holds no credentials")]
    Empty,
}

/// Builds a KRB-CRED for `creds`, encrypted in `key` (the AP exchange's
/// subkey or session key), stamped `now`.
pub fn build_krb_cred(
    creds: &[Credential],
    key: &Key,
    now: SystemTime,
) -> Result<Vec<u8>, CredError> {
    let mut infos = Vec::with_capacity(creds.len());
    for c in creds {
        let (pname, prealm) = messages::to_principal_name(&c.client)?;
        let (sname, srealm) = messages::to_principal_name(&c.server)?;
        infos.push(KrbCredInfo {
            key: messages::key_to_wire(&c.session_key),
            prealm: Some(prealm),
            pname: Some(pname),
            flags: Some(messages::ticket_flags(c.flags)),
            auth_time: Some(messages::to_kerberos_time(c.auth_time)?),
            start_time: c.start_time.map(messages::to_kerberos_time).transpose()?,
            end_time: Some(messages::to_kerberos_time(c.end_time)?),
            renew_till: c.renew_till.map(messages::to_kerberos_time).transpose()?,
            srealm: Some(srealm),
            sname: Some(sname),
            caddr: None,
        });
    }
    let (ts, usec) = messages::to_kerberos_time_usec(now)?;
    let part = EncKrbCredPart {
        ticket_info: infos,
        nonce: None,
        timestamp: Some(ts),
        usec: Some(int(i64::from(usec))),
        sender_address: None,
        recipient_address: None,
    };
    Ok(encode(&KrbCred {
        pvno: int(PVNO),
        msg_type: int(msg_type::KRB_CRED),
        tickets: creds.iter().map(|c| c.ticket.clone()).collect(),
        enc_part: messages::seal(key, usage::KRB_CRED_ENC_PART, None, &part),
    }))
}

/// Opens a KRB-CRED with `key`, checks its time against `skew` and
/// `replay`, and returns its credentials.
pub fn open_krb_cred(
    bytes: &[u8],
    key: &Key,
    skew: Duration,
    replay: &mut ReplayCache,
    now: SystemTime,
) -> Result<Vec<Credential>, CredError> {
    let msg: KrbCred = decode(bytes)?;
    if !messages::is_version(&msg.pvno, &msg.msg_type, msg_type::KRB_CRED) {
        return Err(CredError::BadVersion);
    }
    let part: messages::Wiped<EncKrbCredPart> =
        messages::open_wiped(key, usage::KRB_CRED_ENC_PART, &msg.enc_part).map_err(
            |e| match e {
                e if e.is_integrity_failure() => CredError::Integrity,
                other => CredError::Malformed(other),
            },
        )?;
    if part.ticket_info.len() != msg.tickets.len() {
        return Err(CredError::CountMismatch {
            tickets: msg.tickets.len(),
            infos: part.ticket_info.len(),
        });
    }
    if msg.tickets.is_empty() {
        return Err(CredError::Empty);
    }
    let ts = part.timestamp.as_ref().ok_or(CredError::MissingTimestamp)?;
    let usec = part.usec.clone().unwrap_or_else(|| int(0));
    let d = skew_between(messages::from_kerberos_time_usec(ts, &usec), now);
    if d > skew {
        return Err(CredError::Skew(d.as_secs()));
    }
    let mut creds = Vec::with_capacity(msg.tickets.len());
    for (i, (ticket, info)) in msg.tickets.into_iter().zip(&part.ticket_info).enumerate() {
        let (Some(pname), Some(prealm)) = (&info.pname, &info.prealm) else {
            return Err(CredError::MissingField(i, "the client name"));
        };
        let client = messages::from_principal_name("pname", pname, prealm)?;
        let server = match (&info.sname, &info.srealm) {
            (Some(n), Some(r)) => messages::from_principal_name("sname", n, r)?,
            _ => messages::from_principal_name("ticket sname", &ticket.sname, &ticket.realm)?,
        };
        let end_time = info
            .end_time
            .as_ref()
            .ok_or(CredError::MissingField(i, "the end time"))?;
        let start_time = info.start_time.as_ref().map(messages::from_kerberos_time);
        creds.push(Credential {
            client,
            server,
            session_key: messages::key_from_wire(&info.key)?,
            auth_time: info
                .auth_time
                .as_ref()
                .map(messages::from_kerberos_time)
                .or(start_time)
                .unwrap_or(now),
            start_time,
            end_time: messages::from_kerberos_time(end_time),
            renew_till: info.renew_till.as_ref().map(messages::from_kerberos_time),
            flags: info.flags.as_ref().map(|f| flags_value(&f.0)).unwrap_or(0),
            ticket,
        });
    }
    let first = creds[0].client.to_string();
    replay
        .check_and_insert(
            &AuthenticatorId {
                client: &first,
                server: "krb-cred",
                ctime: messages::from_kerberos_time(ts),
                cusec: messages::usec_value(&usec),
                ciphertext: &msg.enc_part.cipher,
            },
            now,
        )
        .map_err(|e| match e {
            ReplayError::Replay => CredError::Replay,
            ReplayError::Full(_) | ReplayError::ClientFull(_) => CredError::ReplayCacheFull,
        })?;
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::CLOCK_SKEW;
    use crate::test_support::{assert_same_credential, at, issue};
    use roamgate_krb_crypto::Etype;

    /// A TGT of `tgt_etype`, forwarded at t=2000 in a KRB-CRED under a
    /// fresh key of `key_etype`: (the TGT, the key, the KRB-CRED).
    fn forwarded_tgt(tgt_etype: Etype, key_etype: Etype) -> (Credential, Key, Vec<u8>) {
        let (tgt, _) = issue("krbtgt/EXAMPLE.COM@EXAMPLE.COM", tgt_etype);
        let key = Key::random(key_etype);
        let bytes = build_krb_cred(std::slice::from_ref(&tgt), &key, at(2000)).unwrap();
        (tgt, key, bytes)
    }

    #[test]
    fn forwards_a_tgt_and_opens_it() {
        let (tgt, key, bytes) =
            forwarded_tgt(Etype::Aes256CtsHmacSha196, Etype::Aes128CtsHmacSha256128);
        let mut rc = ReplayCache::default();
        let got = open_krb_cred(&bytes, &key, CLOCK_SKEW, &mut rc, at(2010)).unwrap();
        assert_eq!(got.len(), 1);
        assert_same_credential(&got[0], &tgt);
        assert_eq!(
            open_krb_cred(&bytes, &key, CLOCK_SKEW, &mut rc, at(2011)).unwrap_err(),
            CredError::Replay
        );
    }

    #[test]
    fn wrong_key_skew_and_garbage_are_rejected() {
        let (_, key, bytes) = forwarded_tgt(Etype::Aes128CtsHmacSha196, Etype::Aes128CtsHmacSha196);
        let mut rc = ReplayCache::default();
        assert_eq!(
            open_krb_cred(
                &bytes,
                &Key::random(Etype::Aes128CtsHmacSha196),
                CLOCK_SKEW,
                &mut rc,
                at(2000)
            )
            .unwrap_err(),
            CredError::Integrity
        );
        assert_eq!(
            open_krb_cred(&bytes, &key, CLOCK_SKEW, &mut rc, at(2400)).unwrap_err(),
            CredError::Skew(400)
        );
        for n in 0..bytes.len() {
            assert!(open_krb_cred(&bytes[..n], &key, CLOCK_SKEW, &mut rc, at(2000)).is_err());
        }
    }
}
