//! `roamgate bindings`: the bindings in the pinned maps, with their lifetime
//! (from the home agent's journal when it is given) and tunnel counters.
//! Tunnel keys are never read out of the journal's key column for display
//! and never printed.

use std::{
    net::Ipv4Addr,
    path::Path,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use roamgate_mip::journal::{BindingJournal, BindingRecord, SqliteJournal};
use serde::Serialize;

use crate::dataplane::maps::{boottime_now, BindingStatus, Expiry, Maps, Role};

/// One row of the listing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    pub home: Ipv4Addr,
    pub role: &'static str,
    /// Care-of address (home agent rows) or home agent (care-of rows).
    pub remote: Ipv4Addr,
    pub spi: u32,
    /// Seconds until the binding expires in the data plane (None: never).
    pub expires_in_s: Option<u64>,
    pub tunnel_present: bool,
    pub tx_packets: u64,
    pub rx_highest_seq: u64,
    /// From the journal: granted lifetime, seconds since registration,
    /// the Kerberos client, reverse tunnelling.
    pub lifetime_s: Option<u16>,
    pub age_s: Option<u64>,
    pub client: Option<String>,
    pub reverse_tunnel: Option<bool>,
}

fn expires_in(e: Expiry, now_boot: Duration) -> Option<u64> {
    match e {
        Expiry::Never => None,
        Expiry::AtBoottimeNs(ns) => {
            Some(Duration::from_nanos(ns).saturating_sub(now_boot).as_secs())
        }
    }
}

/// Joins the map entries with the journal records. A journaled binding
/// whose care-of address is the home agent itself (a unit at home behind
/// the home gateway) has no map entry: it is listed with the role
/// `at-home`, its lifetime from the journal.
pub fn rows(status: &[BindingStatus], journal: &[BindingRecord], now: SystemTime) -> Vec<Row> {
    let boot = boottime_now();
    let at_home = journal
        .iter()
        .filter(|r| r.care_of == r.home_agent && !status.iter().any(|s| s.binding.home == r.home))
        .map(|r| Row {
            home: r.home,
            role: "at-home",
            remote: r.care_of,
            spi: r.spi,
            expires_in_s: Some(r.expires.duration_since(now).unwrap_or_default().as_secs()),
            tunnel_present: false,
            tx_packets: 0,
            rx_highest_seq: 0,
            lifetime_s: Some(r.lifetime),
            age_s: Some(
                now.duration_since(r.registered_at)
                    .unwrap_or_default()
                    .as_secs(),
            ),
            client: r.client.clone(),
            reverse_tunnel: Some(r.reverse_tunnel),
        });
    status
        .iter()
        .map(|s| {
            let j = journal
                .iter()
                .find(|r| r.home == s.binding.home && r.spi == s.binding.spi);
            Row {
                home: s.binding.home,
                role: match s.binding.role {
                    Role::HomeAgent => "home-agent",
                    Role::CareOf => "care-of",
                },
                remote: s.binding.remote,
                spi: s.binding.spi,
                expires_in_s: expires_in(s.binding.expires, boot),
                tunnel_present: s.tunnel_present,
                tx_packets: s.tx_packets,
                rx_highest_seq: s.rx_highest_seq,
                lifetime_s: j.map(|r| r.lifetime),
                age_s: j.map(|r| {
                    now.duration_since(r.registered_at)
                        .unwrap_or_default()
                        .as_secs()
                }),
                client: j.and_then(|r| r.client.clone()),
                reverse_tunnel: j.map(|r| r.reverse_tunnel),
            }
        })
        .chain(at_home)
        .collect()
}

pub fn list(pin_dir: &Path, journal: Option<&Path>) -> anyhow::Result<Vec<Row>> {
    let maps = Maps::open(pin_dir)
        .with_context(|| format!("opening the pinned maps under {}", pin_dir.display()))?;
    let status = maps.list()?;
    let records = match journal {
        Some(p) if p.exists() => {
            SqliteJournal::open(p)
                .and_then(|j| j.load())
                .with_context(|| format!("reading {}", p.display()))?
                .bindings
        }
        _ => Vec::new(),
    };
    Ok(rows(&status, &records, SystemTime::now()))
}

pub fn print(pin_dir: &Path, journal: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let rows = list(pin_dir, journal)?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<10} {:<16} {:>10} {:>9} {:>9} {:>10} {:>10}  client",
        "home", "role", "remote", "spi", "expires", "lifetime", "tx", "rx_top"
    );
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v}s"));
    for r in rows {
        println!(
            "{:<16} {:<10} {:<16} {:>10} {:>9} {:>9} {:>10} {:>10}  {}",
            r.home.to_string(),
            r.role,
            r.remote.to_string(),
            format!("{:#x}", r.spi),
            opt(r.expires_in_s),
            opt(r.lifetime_s.map(u64::from)),
            r.tx_packets,
            r.rx_highest_seq,
            r.client.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::maps::Binding;
    use roamgate_mip::MasterKey;

    #[test]
    fn rows_join_the_journal_and_never_carry_keys() {
        let home = Ipv4Addr::new(10, 1, 0, 50);
        let st = BindingStatus {
            binding: Binding {
                home,
                role: Role::HomeAgent,
                remote: Ipv4Addr::new(198, 51, 100, 2),
                spi: 0x1234,
                expires: Expiry::AtBoottimeNs(
                    (boottime_now() + Duration::from_secs(100)).as_nanos() as u64,
                ),
            },
            tunnel_present: true,
            tx_packets: 7,
            rx_highest_seq: 5,
            tunnel_expires: None,
        };
        let now = SystemTime::now();
        let rec = BindingRecord {
            home,
            care_of: Ipv4Addr::new(198, 51, 100, 2),
            home_agent: Ipv4Addr::new(192, 0, 2, 1),
            spi: 0x1234,
            master_key: MasterKey::new([0xab; 32]),
            identification: 1,
            lifetime: 120,
            registered_at: now - Duration::from_secs(20),
            expires: now + Duration::from_secs(100),
            reverse_tunnel: true,
            client: Some("mn@R".into()),
        };
        let r = rows(&[st], &[rec], now);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].lifetime_s, Some(120));
        assert_eq!(r[0].age_s, Some(20));
        assert!(matches!(r[0].expires_in_s, Some(98..=100)));
        assert_eq!(r[0].tx_packets, 7);
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("abab"), "{json}");
        assert!(!json.contains("171"), "{json}"); // 0xab as decimal bytes
    }

    #[test]
    fn a_unit_at_home_is_listed_from_the_journal_alone() {
        let ha = Ipv4Addr::new(192, 0, 2, 1);
        let now = SystemTime::now();
        let rec = |home, care_of| BindingRecord {
            home,
            care_of,
            home_agent: ha,
            spi: 0x99,
            master_key: MasterKey::new([1; 32]),
            identification: 1,
            lifetime: 600,
            registered_at: now,
            expires: now + Duration::from_secs(600),
            reverse_tunnel: true,
            client: None,
        };
        let at_home = Ipv4Addr::new(10, 1, 0, 51);
        // Away but its map entry gone (say, a reboot): not listed as at home.
        let away = Ipv4Addr::new(10, 1, 0, 52);
        let r = rows(
            &[],
            &[rec(at_home, ha), rec(away, Ipv4Addr::new(198, 51, 100, 2))],
            now,
        );
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].home, r[0].role, r[0].remote),
            (at_home, "at-home", ha)
        );
        assert!(!r[0].tunnel_present);
    }
}
