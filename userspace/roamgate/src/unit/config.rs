//! `roamgate unit` configuration (TOML, config/unit.toml): every key has a
//! named default; unknown keys are refused; `validate()` names the key.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::bail;
use roamgate_krb::Principal;
use serde::Deserialize;

use crate::config::{ConfigFile, LogSection};

pub const DEFAULT_STATE_FILE: &str = "/var/lib/roamgate/unit/state.toml";
pub const DEFAULT_SESSION_FILE: &str = "/var/lib/roamgate/unit/session.json";
pub const DEFAULT_MANAGER: &str = "attach/pm.example.org@EXAMPLE.ORG";
pub const DEFAULT_KDC: &str = "127.0.0.1:88";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnitFile {
    pub unit: UnitSection,
    pub kerberos: KerberosSection,
    pub call: CallSection,
    pub log: LogSection,
}

pub const DEFAULT_CALLS_DIR: &str = "/var/lib/roamgate/unit/calls";

/// Calls (`roamgate unit call` and `answer`, docs/call.md): the unit is
/// the call's endpoint at its home address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallSection {
    /// The unit's own E.164 number (the directory's); `answer` takes calls
    /// for it and `call` sends it as the calling number. Empty: none.
    pub number: String,
    /// H.225.0 call signalling (TCP) at the home address.
    pub signalling_port: u16,
    /// SRTP profile: "aes_cm_128_hmac_sha1_80" (RFC 3711) or
    /// "aead_aes_128_gcm" (RFC 7714). Not negotiated: both ends must agree.
    pub srtp_profile: String,
    /// Codec offered first: "pcmu" (G.711 µ-law) or "pcma" (A-law); the
    /// other is offered second.
    pub law: String,
    /// SRTCP sender reports this often (RTT and loss for both ends).
    pub rtcp_interval_ms: u64,
    /// `call`: give up on a callee that does not accept the TCP connection.
    pub connect_timeout_ms: u64,
    /// `answer`: ring this long before connecting.
    pub answer_after_ms: u64,
    /// One JSON file per call (its statistics), for `unit status`; the
    /// newest 64 are kept.
    pub calls_dir: PathBuf,
    /// `answer`: Prometheus metrics here (e.g. "127.0.0.1:9466"); empty: off.
    pub metrics: String,
}

impl Default for CallSection {
    fn default() -> Self {
        Self {
            number: String::new(),
            signalling_port: 1720,
            srtp_profile: "aes_cm_128_hmac_sha1_80".to_owned(),
            law: "pcmu".to_owned(),
            rtcp_interval_ms: 1000,
            connect_timeout_ms: 3000,
            answer_after_ms: 0,
            calls_dir: PathBuf::from(DEFAULT_CALLS_DIR),
            metrics: String::new(),
        }
    }
}

impl CallSection {
    pub fn profile(&self) -> anyhow::Result<roamgate_srtp::Profile> {
        match self.srtp_profile.as_str() {
            "aes_cm_128_hmac_sha1_80" => Ok(roamgate_srtp::Profile::AesCm128HmacSha1_80),
            "aead_aes_128_gcm" => Ok(roamgate_srtp::Profile::AeadAes128Gcm),
            other => bail!(
                "call.srtp_profile: {other:?} is not \"aes_cm_128_hmac_sha1_80\" or \"aead_aes_128_gcm\""
            ),
        }
    }

    pub fn law(&self) -> anyhow::Result<roamgate_call::media::g711::Law> {
        use roamgate_call::media::g711::Law;
        match self.law.as_str() {
            "pcmu" => Ok(Law::Mu),
            "pcma" => Ok(Law::A),
            other => bail!("call.law: {other:?} is not \"pcmu\" or \"pcma\""),
        }
    }

    pub fn metrics(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.metrics.is_empty() {
            return Ok(None);
        }
        self.metrics.parse().map(Some).map_err(|e| {
            anyhow::anyhow!(
                "call.metrics: {:?}: {e} (e.g. 127.0.0.1:9466)",
                self.metrics
            )
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnitSection {
    /// Identity code and long-term keys (`roamgate unit init`), mode 0600.
    pub state_file: PathBuf,
    /// Where the unit is attached (base station, proxy manager): no secret.
    pub session_file: PathBuf,
    /// The proxy manager's service principal, unless `--manager` names one.
    pub manager: String,
    /// `switch-on --stay`: a status request this often; keep it well below
    /// the proxy manager's silence timeout.
    pub keepalive_secs: u64,
}

impl Default for UnitSection {
    fn default() -> Self {
        Self {
            state_file: PathBuf::from(DEFAULT_STATE_FILE),
            session_file: PathBuf::from(DEFAULT_SESSION_FILE),
            manager: DEFAULT_MANAGER.to_owned(),
            keepalive_secs: 120,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KerberosSection {
    /// The realm's KDC (UDP, then TCP for large answers).
    pub kdc: SocketAddr,
}

impl Default for KerberosSection {
    fn default() -> Self {
        Self {
            kdc: DEFAULT_KDC.parse().expect("valid default address"),
        }
    }
}

impl ConfigFile for UnitFile {
    fn validate(&self) -> anyhow::Result<()> {
        if self.unit.state_file.as_os_str().is_empty() {
            bail!("unit.state_file: empty; give the state file's path");
        }
        if self.unit.session_file.as_os_str().is_empty() {
            bail!("unit.session_file: empty; give the session file's path");
        }
        self.manager()?;
        if self.unit.keepalive_secs == 0 {
            bail!("unit.keepalive_secs must be at least 1");
        }
        let c = &self.call;
        if !c.number.is_empty()
            && (c.number.len() > 15 || !c.number.bytes().all(|b| b.is_ascii_digit()))
        {
            bail!("call.number: {:?} is not E.164 digits (1 to 15)", c.number);
        }
        if c.signalling_port == 0 {
            bail!("call.signalling_port: 0; H.225.0 uses 1720");
        }
        c.profile()?;
        c.law()?;
        c.metrics()?;
        if c.rtcp_interval_ms == 0 || c.connect_timeout_ms == 0 {
            bail!("call.rtcp_interval_ms and call.connect_timeout_ms must be at least 1");
        }
        if c.calls_dir.as_os_str().is_empty() {
            bail!("call.calls_dir: empty; give a directory for the calls' statistics");
        }
        Ok(())
    }
}

impl UnitFile {
    pub fn manager(&self) -> anyhow::Result<Principal> {
        Principal::parse(&self.unit.manager).map_err(|e| {
            anyhow::anyhow!("unit.manager: {e} (e.g. attach/pm.example.org@EXAMPLE.ORG)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_the_defaults() {
        let text = include_str!("../../../../config/unit.toml");
        let cfg = UnitFile::from_toml(text).unwrap();
        let d = UnitFile::default();
        assert_eq!(cfg.unit.state_file, d.unit.state_file);
        assert_eq!(cfg.unit.session_file, d.unit.session_file);
        assert_eq!(cfg.unit.manager, d.unit.manager);
        assert_eq!(cfg.unit.keepalive_secs, d.unit.keepalive_secs);
        assert_eq!(cfg.kerberos.kdc, d.kerberos.kdc);
        let (c, dc) = (&cfg.call, &d.call);
        assert_eq!(c.number, dc.number);
        assert_eq!(c.signalling_port, dc.signalling_port);
        assert_eq!(c.srtp_profile, dc.srtp_profile);
        assert_eq!(c.law, dc.law);
        assert_eq!(c.rtcp_interval_ms, dc.rtcp_interval_ms);
        assert_eq!(c.connect_timeout_ms, dc.connect_timeout_ms);
        assert_eq!(c.answer_after_ms, dc.answer_after_ms);
        assert_eq!(c.calls_dir, dc.calls_dir);
        assert_eq!(c.metrics, dc.metrics);
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = UnitFile::from_toml("[unit]\nmanager = \"not a principal@\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("unit.manager"), "{e:#}");
        assert!(UnitFile::from_toml("[unit]\nstray = 1\n").is_err());
        for (bad, key) in [
            ("[call]\nnumber = \"49-30\"\n", "call.number"),
            ("[call]\nsrtp_profile = \"null\"\n", "call.srtp_profile"),
            ("[call]\nlaw = \"g729\"\n", "call.law"),
            ("[call]\nmetrics = \"nowhere\"\n", "call.metrics"),
        ] {
            let e = UnitFile::from_toml(bad).unwrap_err();
            assert!(format!("{e:#}").contains(key), "{e:#}");
        }
    }
}
