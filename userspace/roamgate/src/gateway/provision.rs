//! The gateway's first run: a realm, the roles' service principals and
//! their keytabs under state_dir, the derived role files the CLIs read;
//! later runs reuse them. Then the exact commands that provision a unit
//! and switch it on, as a shell would take them.

use std::{fmt::Write as _, path::Path};

use anyhow::{bail, Context as _};
use roamgate_krb::{
    cli::kdc::export_keytab,
    kdc::db::{NewKeys, NewPrincipal, PrincipalStore as _, SqliteDb},
    Principal,
};

use super::roles::{Layout, BILLING, DIRECTORY, PROXY_MANAGER};
use crate::platform::fs::{private_dir, write_atomic};

/// What the first (or a later) run found or made.
#[derive(Debug, PartialEq, Eq)]
pub enum Realm {
    Created,
    Reused,
    /// An external KDC: the operator's keytabs are used as they are.
    External,
}

/// Makes (or checks) the realm, principals, keytabs and derived role files.
pub fn ensure(l: &Layout<'_>) -> anyhow::Result<Realm> {
    let dir = l.cfg.state_dir();
    private_dir(dir).with_context(|| {
        format!(
            "creating the state directory {} (gateway.state_dir)",
            dir.display()
        )
    })?;
    private_dir(&dir.join("keytabs"))
        .with_context(|| format!("creating {}/keytabs", dir.display()))?;
    let realm = if l.cfg.kdc.local() {
        ensure_realm(l)?
    } else {
        for role in l.keyed_roles() {
            let kt = l.keytab(role);
            if !kt.exists() {
                bail!(
                    "{} is missing: with kdc.external (or kdc.enabled = false) the gateway runs no KDC; \
                     export the key of {} from your KDC into it (MIT: kadmin -q \"ktadd -k {} {}\")",
                    kt.display(),
                    l.principal(role),
                    kt.display(),
                    l.principal(role)
                );
            }
        }
        Realm::External
    };
    for (path, text, mode) in [
        (l.role_config(DIRECTORY), l.directory_text(), 0o600),
        (l.role_config(BILLING), l.billing_text(), 0o600),
        (l.unit_template(), l.unit_text()?, 0o644),
    ] {
        write_atomic(&path, text.as_bytes(), mode)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(realm)
}

fn ensure_realm(l: &Layout<'_>) -> anyhow::Result<Realm> {
    let (db, want) = (l.kdc_db(), l.cfg.gateway.realm.as_str());
    let (store, made) = if db.exists() {
        let s = SqliteDb::open(&db, None)
            .with_context(|| format!("opening the KDC database {}", db.display()))?;
        if s.realm() != want {
            bail!(
                "{} holds realm {} but gateway.realm is {want}: set gateway.realm = \"{}\", \
                 or point gateway.state_dir at a fresh directory",
                db.display(),
                s.realm(),
                s.realm()
            );
        }
        (s, Realm::Reused)
    } else {
        let s = SqliteDb::create(&db, want, None)
            .with_context(|| format!("creating realm {want} in {}", db.display()))?;
        (s, Realm::Created)
    };
    for role in l.keyed_roles() {
        let p = Principal::parse(&l.principal(role))
            .map_err(|e| anyhow::anyhow!("principal {}: {e}", l.principal(role)))?;
        if store.get(&p)?.is_none() {
            store
                .add_principal(&p, NewKeys::Random, &NewPrincipal::default())
                .with_context(|| format!("adding {p}"))?;
        }
        let kt = l.keytab(role);
        // A keytab from an older key would be refused: rewrite it whole.
        let _ = std::fs::remove_file(&kt);
        export_keytab(&store, &p, &kt)
            .with_context(|| format!("writing the keytab of {p} to {}", kt.display()))?;
    }
    Ok(made)
}

/// The lines printed at start: where things are, and how to add a unit.
pub fn banner(l: &Layout<'_>, realm: &Realm) -> String {
    let dir = l.cfg.state_dir();
    let realm_name = &l.cfg.gateway.realm;
    let mut t = String::new();
    let _ = match realm {
        Realm::Created => writeln!(t, "created realm {realm_name} in {}", dir.display()),
        Realm::Reused => writeln!(t, "reusing realm {realm_name} in {}", dir.display()),
        Realm::External if l.cfg.kdc.external.is_empty() => writeln!(
            t,
            "realm {realm_name}: no KDC runs here (kdc.enabled = false); keytabs in {}",
            dir.join("keytabs").display()
        ),
        Realm::External => writeln!(
            t,
            "realm {realm_name} on the external KDC {}; keytabs in {}",
            l.cfg.kdc.external,
            dir.join("keytabs").display()
        ),
    };
    if !matches!(realm, Realm::External) {
        let _ = writeln!(t, "  KDC database   {}", l.kdc_db().display());
    }
    for role in l.keyed_roles() {
        let _ = writeln!(
            t,
            "  {:<14} {} ({})",
            format!("{role} key"),
            l.keytab(role).display(),
            l.principal(role)
        );
    }
    if l.cfg.directory.local() {
        let _ = writeln!(
            t,
            "  directory      {}",
            dir.join("directory.sqlite").display()
        );
    }
    if l.cfg.billing.local() {
        let _ = writeln!(
            t,
            "  ledger         {}",
            dir.join("billing.sqlite").display()
        );
    }
    if let Some(cmds) = unit_commands(l) {
        t.push_str(&cmds);
    }
    t
}

/// The commands that provision a unit and switch it on, or `None` when
/// this gateway cannot provision alone (an external KDC or directory).
pub fn unit_commands(l: &Layout<'_>) -> Option<String> {
    let c = l.cfg;
    if !(c.kdc.local() && c.directory.local() && c.proxy_manager.enabled && c.base_station.enabled)
    {
        return None;
    }
    let realm = &c.gateway.realm;
    let db = l.kdc_db();
    let mut home = l.address.octets();
    home[3] = if home[3] == 50 { 51 } else { 50 };
    let home = std::net::Ipv4Addr::from(home);
    let sh = |p: &Path| shell_quote(&p.display().to_string());
    let mut t = String::new();
    let _ = writeln!(t, "\nTo provision a unit and switch it on, paste into a shell (UNIT, HOME_ADDRESS,\nNUMBER and SPI are yours to choose; HOME_ADDRESS an unused address of the home network):\n");
    let _ = writeln!(
        t,
        "UNIT=alice HOME_ADDRESS={home} NUMBER=4930100050 SPI=257"
    );
    let _ = writeln!(
        t,
        "mkdir -p \"$UNIT\" && cd \"$UNIT\" && sed \"s/^number = \\\"\\\"/number = \\\"$NUMBER\\\"/\" {} > unit.toml",
        sh(&l.unit_template())
    );
    let _ = writeln!(t, "CODE=$(roamgate unit init --config unit.toml --principal \"$UNIT@{realm}\" | awk 'NR == 1 {{ print $3 }}')");
    let _ = writeln!(
        t,
        "roamgate unit export-keytab --config unit.toml --out unit.keytab"
    );
    let _ = writeln!(
        t,
        "roamgate kdc add-principal --db {} \"$UNIT@{realm}\" --keytab unit.keytab",
        sh(&db)
    );
    let _ = writeln!(
        t,
        "roamgate kdc add-principal --db {} \"call/$UNIT@{realm}\" --random-key",
        sh(&db)
    );
    let _ = writeln!(
        t,
        "roamgate kdc export-keytab --db {} \"call/$UNIT@{realm}\" --out call.keytab",
        sh(&db)
    );
    let _ = writeln!(
        t,
        "roamgate directory add-unit -c {} --code \"$CODE\" --principal \"$UNIT@{realm}\" \
         --home-address \"$HOME_ADDRESS\" --home-agent {} --spi \"$SPI\" --generate-mip-key \
         --account \"acct-$UNIT\" --dialled-number \"$NUMBER\" --call-keytab call.keytab",
        sh(&l.role_config(DIRECTORY)),
        l.address
    );
    if c.billing.local() {
        let _ = writeln!(
            t,
            "roamgate billing add-account \"acct-$UNIT\" -c {} --principal \"$UNIT@{realm}\" \
             --postpaid --credit-limit 100000 --setup-fee 10 --per-second 2",
            sh(&l.role_config(BILLING))
        );
    }
    let _ = writeln!(
        t,
        "sleep {}   # the home agent takes the new unit from the directory",
        c.home_agent.units_refresh_secs + 1
    );
    let _ = writeln!(
        t,
        "roamgate unit switch-on --config unit.toml --base-station {} --manager {}",
        l.base_station_addr(),
        l.principal(PROXY_MANAGER)
    );
    Some(t)
}

/// Single-quoted for sh, unless plainly safe.
fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:@+=".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{config::ConfigFile as _, gateway::config::GatewayConfig};

    fn cfg(dir: &Path) -> GatewayConfig {
        GatewayConfig::from_toml(&format!("[gateway]\nstate_dir = \"{}\"\n", dir.display()))
            .unwrap()
    }

    #[test]
    fn first_run_creates_the_realm_and_a_second_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let l = Layout::new(&c, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(ensure(&l).unwrap(), Realm::Created);
        for role in l.keyed_roles() {
            let kt = roamgate_krb::keytab::Keytab::load(&l.keytab(role)).unwrap();
            let p = Principal::parse(&l.principal(role)).unwrap();
            assert!(!kt.newest_keys(&p).is_empty(), "{role}");
        }
        assert!(l.role_config(DIRECTORY).exists() && l.unit_template().exists());
        assert_eq!(ensure(&l).unwrap(), Realm::Reused);
        let b = banner(&l, &Realm::Reused);
        assert!(
            b.starts_with(&format!(
                "reusing realm HOME.ROAMGATE.TEST in {}",
                dir.path().display()
            )),
            "{b}"
        );
        assert!(
            b.contains("roamgate unit switch-on --config unit.toml --base-station 192.0.2.1:4340"),
            "{b}"
        );
    }

    #[test]
    fn another_realm_in_the_state_dir_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        ensure(&Layout::new(&c, Ipv4Addr::LOCALHOST)).unwrap();
        let other = GatewayConfig::from_toml(&format!(
            "[gateway]\nstate_dir = \"{}\"\nrealm = \"OTHER.TEST\"\n",
            dir.path().display()
        ))
        .unwrap();
        let err = ensure(&Layout::new(&other, Ipv4Addr::LOCALHOST)).unwrap_err();
        assert!(
            format!("{err:#}").contains("holds realm HOME.ROAMGATE.TEST"),
            "{err:#}"
        );
    }

    #[test]
    fn an_external_kdc_needs_the_operators_keytabs() {
        let dir = tempfile::tempdir().unwrap();
        let c = GatewayConfig::from_toml(&format!(
            "[gateway]\nstate_dir = \"{}\"\n[kdc]\nexternal = \"127.0.0.1:88\"\n",
            dir.path().display()
        ))
        .unwrap();
        let l = Layout::new(&c, Ipv4Addr::LOCALHOST);
        let err = ensure(&l).unwrap_err();
        assert!(format!("{err:#}").contains("kadmin"), "{err:#}");
        assert!(unit_commands(&l).is_none());
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/var/lib/roamgate"), "/var/lib/roamgate");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
    }
}
