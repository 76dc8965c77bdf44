//! `roamgate krb ...`: client tools (kinit, kvno, klist).
//!
//! Each failure is one line that names its cause (wrong password, unknown
//! principal, unreachable KDC, corrupt file) and exits non-zero.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use roamgate_krb_crypto::Key;
use zeroize::Zeroizing;

use crate::ccache::{CCache, CCacheError};
use crate::client::{self, AsOptions, ClientSecret, Credential, KdcTransport};
use crate::keytab::{Keytab, KeytabError};
use crate::messages::ticket_flags;
use crate::principal::Principal;

#[derive(clap::Subcommand, Debug)]
pub enum KrbCommand {
    /// Get a ticket-granting ticket with a password or a keytab.
    #[command(group(clap::ArgGroup::new("secret").required(true).args(["password_stdin", "keytab"])))]
    Kinit {
        #[arg(long)]
        realm: String,
        /// The KDC, HOST:PORT.
        #[arg(long)]
        kdc: String,
        /// The client, `name` or `name@REALM`.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Use the client's key from this keytab.
        #[arg(long)]
        keytab: Option<PathBuf>,
        /// Credential cache file to write.
        #[arg(long)]
        ccache: PathBuf,
        /// Requested ticket lifetime in seconds.
        #[arg(long, default_value_t = 36000)]
        lifetime: u64,
        /// Talk to the KDC over TCP only.
        #[arg(long)]
        tcp: bool,
    },
    /// Get a service ticket with the TGT in the cache, store it there and
    /// print its key version number.
    Kvno {
        #[arg(long)]
        realm: String,
        #[arg(long)]
        kdc: String,
        #[arg(long)]
        ccache: PathBuf,
        /// The service, `service/host` or `service/host@REALM`.
        service: String,
        #[arg(long)]
        tcp: bool,
    },
    /// List the tickets in a credential cache.
    Klist {
        #[arg(long)]
        ccache: PathBuf,
    },
}

pub async fn run(cmd: KrbCommand) -> anyhow::Result<()> {
    match cmd {
        KrbCommand::Kinit {
            realm,
            kdc,
            name,
            password_stdin,
            keytab,
            ccache,
            lifetime,
            tcp,
        } => {
            let client = parse_name(&name, &realm)?;
            let secret = if password_stdin {
                ClientSecret::Password(read_password()?)
            } else {
                let path = keytab.ok_or_else(|| anyhow!("give --password-stdin or --keytab"))?;
                ClientSecret::Keys(keytab_keys(&path, &client)?)
            };
            let opts = AsOptions {
                lifetime: Duration::from_secs(lifetime),
                ..Default::default()
            };
            let cred = client::get_tgt(
                &transport(&kdc, tcp),
                client.clone(),
                secret,
                opts,
                SystemTime::now,
            )
            .await?;
            let mut cc = CCache::new(client);
            cc.store(to_ccache(&cred));
            save_ccache(&cc, &ccache)?;
            Ok(())
        }
        KrbCommand::Kvno {
            realm,
            kdc,
            ccache,
            service,
            tcp,
        } => {
            let service = parse_name(&service, &realm)?;
            let mut cc = load_ccache(&ccache)?;
            let tgt = find_tgt(&cc, &ccache, &realm)?;
            let cred = client::get_service_ticket(
                &transport(&kdc, tcp),
                &tgt,
                service.clone(),
                SystemTime::now,
            )
            .await?;
            let kvno = cred.ticket.enc_part.kvno;
            cc.store(to_ccache(&cred));
            save_ccache(&cc, &ccache)?;
            match kvno {
                Some(k) => println!("{service}: kvno = {k}"),
                None => println!("{service}: kvno = (none)"),
            }
            Ok(())
        }
        KrbCommand::Klist { ccache } => {
            let cc = load_ccache(&ccache)?;
            print!("{}", klist_text(&cc, &ccache));
            Ok(())
        }
    }
}

fn parse_name(name: &str, realm: &str) -> anyhow::Result<Principal> {
    Principal::parse_with_realm(name, realm).map_err(|e| anyhow!("{e}"))
}

fn transport(kdc: &str, tcp: bool) -> KdcTransport {
    let mut t = KdcTransport::new(kdc);
    t.tcp_only = tcp;
    t
}

fn save_ccache(cc: &CCache, path: &Path) -> anyhow::Result<()> {
    cc.save(path).map_err(|e| match &e {
        CCacheError::Write { source, .. } => {
            anyhow!("cannot write credential cache {}: {source}", path.display())
        }
        other => anyhow!("cannot write credential cache {}: {other}", path.display()),
    })
}

fn read_password() -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        bail!("no password on standard input");
    }
    Ok(Zeroizing::new(pw.as_bytes().to_vec()))
}

/// The newest key per etype of `client` in the keytab at `path`.
fn keytab_keys(path: &Path, client: &Principal) -> anyhow::Result<Vec<Key>> {
    let kt = Keytab::load(path).map_err(|e| match &e {
        KeytabError::Read { source, .. } => {
            anyhow!("cannot read keytab {}: {source}", path.display())
        }
        other => anyhow!("corrupt keytab {}: {other}", path.display()),
    })?;
    let keys = kt.newest_keys(client);
    if keys.is_empty() {
        bail!(
            "keytab {} has no key for {client} of a supported etype (17, 18, 19, 20)",
            path.display()
        );
    }
    Ok(keys)
}

fn load_ccache(path: &Path) -> anyhow::Result<CCache> {
    CCache::load(path).map_err(|e| match &e {
        CCacheError::Read { source, .. } => {
            anyhow!("cannot read credential cache {}: {source}", path.display())
        }
        other => anyhow!("corrupt credential cache {}: {other}", path.display()),
    })
}

fn find_tgt(cc: &CCache, path: &Path, realm: &str) -> anyhow::Result<Credential> {
    let krbtgt = Principal::krbtgt(realm);
    let stored = cc
        .tickets()
        .filter(|c| crate::messages::same_principal(&c.server, &krbtgt))
        .filter(|c| crate::messages::same_principal(&c.client, &cc.default_principal))
        .last()
        .ok_or_else(|| {
            anyhow!(
                "credential cache {} holds no TGT ({krbtgt}) for {}; run kinit first",
                path.display(),
                cc.default_principal
            )
        })?;
    let cred = from_ccache(stored)
        .map_err(|e| anyhow!("corrupt credential cache {}: {e}", path.display()))?;
    if cred.end_time <= SystemTime::now() {
        bail!(
            "the TGT for {} in {} has expired; run kinit again",
            cred.client,
            path.display()
        );
    }
    Ok(cred)
}

fn secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

fn time(s: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(s))
}

/// A client credential as MIT's ccache stores it.
pub fn to_ccache(c: &Credential) -> crate::ccache::Credential {
    crate::ccache::Credential {
        client: c.client.clone(),
        server: c.server.clone(),
        key: (&c.session_key).into(),
        times: crate::ccache::Times {
            authtime: secs(c.auth_time),
            starttime: c.start_time.map(secs).unwrap_or(secs(c.auth_time)),
            endtime: secs(c.end_time),
            renew_till: c.renew_till.map(secs).unwrap_or(0),
        },
        is_skey: false,
        ticket_flags: c.flags,
        addresses: Vec::new(),
        authdata: Vec::new(),
        ticket: c.ticket_der(),
        second_ticket: Vec::new(),
    }
}

/// A ccache entry as a client credential.
pub fn from_ccache(c: &crate::ccache::Credential) -> anyhow::Result<Credential> {
    let ticket = crate::messages::decode(&c.ticket).context("its ticket does not decode")?;
    Ok(Credential {
        client: c.client.clone(),
        server: c.server.clone(),
        session_key: c
            .key
            .to_key()
            .map_err(|e| anyhow!("session key of {}: {e}", c.server))?,
        auth_time: time(c.times.authtime),
        start_time: (c.times.starttime != 0).then(|| time(c.times.starttime)),
        end_time: time(c.times.endtime),
        renew_till: (c.times.renew_till != 0).then(|| time(c.times.renew_till)),
        flags: c.ticket_flags,
        ticket,
    })
}

fn fmt_time(s: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(s), 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| s.to_string())
}

fn flag_letters(f: u32) -> String {
    use ticket_flags::*;
    [
        (FORWARDABLE, 'F'),
        (FORWARDED, 'f'),
        (PROXIABLE, 'P'),
        (PROXY, 'p'),
        (MAY_POSTDATE, 'D'),
        (POSTDATED, 'd'),
        (RENEWABLE, 'R'),
        (INITIAL, 'I'),
        (INVALID, 'i'),
        (PRE_AUTHENT, 'A'),
        (HW_AUTHENT, 'H'),
        (TRANSITED_POLICY_CHECKED, 'T'),
        (OK_AS_DELEGATE, 'O'),
    ]
    .iter()
    .filter(|(bit, _)| f & bit != 0)
    .map(|(_, c)| *c)
    .collect()
}

/// The listing `roamgate krb klist` prints (times in UTC, flags as MIT's
/// `klist -f` letters).
pub fn klist_text(cc: &CCache, path: &Path) -> String {
    let mut out = format!(
        "Ticket cache: FILE:{}\nDefault principal: {}\n\n{:<20} {:<20} {:<6} {:<8} Service principal\n",
        path.display(),
        cc.default_principal,
        "Valid starting (UTC)",
        "Expires (UTC)",
        "Flags",
        "Etype"
    );
    for c in cc.tickets() {
        let start = if c.times.starttime != 0 {
            c.times.starttime
        } else {
            c.times.authtime
        };
        out.push_str(&format!(
            "{:<20} {:<20} {:<6} {:<8} {}\n",
            fmt_time(start),
            fmt_time(c.times.endtime),
            flag_letters(c.ticket_flags),
            c.key.etype,
            c.server
        ));
        if c.times.renew_till != 0 {
            out.push_str(&format!("\trenew until {}\n", fmt_time(c.times.renew_till)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_same_credential, at, issue};
    use roamgate_krb_crypto::Etype;

    #[test]
    fn ccache_round_trip_of_a_credential() {
        let (cred, _) = issue("krbtgt/EXAMPLE.COM@EXAMPLE.COM", Etype::Aes256CtsHmacSha196);
        let back = from_ccache(&to_ccache(&cred)).unwrap();
        assert_same_credential(&back, &cred);
    }

    #[test]
    fn klist_lists_tickets_with_flags() {
        let (cred, _) = issue("krbtgt/EXAMPLE.COM@EXAMPLE.COM", Etype::Aes256CtsHmacSha196);
        let mut cc = CCache::new(cred.client.clone());
        cc.store(to_ccache(&cred));
        let text = klist_text(&cc, Path::new("/tmp/cc"));
        assert!(
            text.contains("Default principal: alice@EXAMPLE.COM"),
            "{text}"
        );
        assert!(text.contains("krbtgt/EXAMPLE.COM@EXAMPLE.COM"), "{text}");
        assert!(text.contains(&fmt_time(secs(at(37000)))), "{text}");
        assert!(text.contains(" F "), "{text}");
    }

    #[test]
    fn corrupt_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cc");
        let e = load_ccache(&p).unwrap_err().to_string();
        assert!(e.starts_with("cannot read credential cache"), "{e}");
        std::fs::write(&p, [0x05, 0x04, 0x00]).unwrap();
        let e = load_ccache(&p).unwrap_err().to_string();
        assert!(e.starts_with("corrupt credential cache"), "{e}");
        std::fs::write(&p, b"garbage!").unwrap();
        let e = keytab_keys(&p, &Principal::parse("a@B").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("corrupt keytab"), "{e}");
    }
}
