//! `roamgate kdc ...`: manage and serve the embedded KDC.

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use roamgate_krb_crypto::Etype;

use crate::kdc::db::{CachedStore, NewKeys, NewPrincipal, PrincipalFlags, SqliteDb};
use crate::kdc::server::{self, ServerConfig};
use crate::kdc::{Kdc, KdcConfig};
use crate::principal::Principal;

#[derive(clap::Subcommand, Debug)]
pub enum KdcCommand {
    /// Create a realm: its principal database, its master key file
    /// (PATH.mkey, mode 0600) and the krbtgt/REALM principal.
    Init {
        #[arg(long)]
        realm: String,
        #[arg(long)]
        db: PathBuf,
        /// Master key file (default: the database path plus ".mkey").
        #[arg(long)]
        master_key: Option<PathBuf>,
    },
    /// Add a principal with a password read from stdin or a random key.
    AddPrincipal {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        master_key: Option<PathBuf>,
        /// `name@REALM` or `service/host@REALM` (the realm may be omitted).
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(
            long,
            conflicts_with = "random_key",
            required_unless_present = "random_key"
        )]
        password_stdin: bool,
        /// Give the principal random keys (for services).
        #[arg(long)]
        random_key: bool,
        /// Comma-separated etypes (numbers or MIT names); default all of
        /// 20, 18, 19, 17.
        #[arg(long, value_delimiter = ',')]
        etypes: Vec<String>,
        /// Do not require pre-authentication in the AS exchange.
        #[arg(long)]
        no_preauth: bool,
        /// Maximum ticket life in seconds (default: the realm's, 24 h).
        #[arg(long)]
        max_life: Option<u64>,
        /// Maximum renewable life in seconds (default: the realm's, 7 days).
        #[arg(long)]
        max_renew: Option<u64>,
    },
    /// Give a principal new keys at the next kvno.
    ChangeKeys {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        master_key: Option<PathBuf>,
        name: String,
        #[arg(
            long,
            conflicts_with = "random_key",
            required_unless_present = "random_key"
        )]
        password_stdin: bool,
        #[arg(long)]
        random_key: bool,
        #[arg(long, value_delimiter = ',')]
        etypes: Vec<String>,
    },
    /// Remove a principal.
    DeletePrincipal {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        master_key: Option<PathBuf>,
        name: String,
    },
    /// List the principals.
    List {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        master_key: Option<PathBuf>,
    },
    /// Write a principal's keys (every etype and kvno) to an MIT keytab,
    /// appending to the file if it exists.
    ExportKeytab {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        master_key: Option<PathBuf>,
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the KDC on UDP and TCP.
    Serve {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        master_key: Option<PathBuf>,
        /// Address for both UDP and TCP, e.g. 0.0.0.0:88.
        #[arg(long)]
        listen: SocketAddr,
        /// UDP replies longer than this get KRB_ERR_RESPONSE_TOO_BIG.
        #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_UDP_REPLY)]
        max_udp_reply: usize,
        /// The longest TCP request accepted, in bytes.
        #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_TCP_REQUEST)]
        max_tcp_request: usize,
    },
}

fn parse_etypes(list: &[String]) -> anyhow::Result<Vec<Etype>> {
    if list.is_empty() {
        return Ok(Etype::ALL.to_vec());
    }
    list.iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<i32>()
                .ok()
                .and_then(Etype::from_i32)
                .or_else(|| Etype::from_name(s))
                .with_context(|| {
                    format!("unsupported etype {s:?}; use 17, 18, 19, 20 or their MIT names")
                })
        })
        .collect()
}

fn read_password() -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    if line.is_empty() {
        bail!("no password on stdin (an empty password is not allowed)");
    }
    Ok(line)
}

fn open_db(db: &Path, mkey: Option<&Path>) -> anyhow::Result<SqliteDb> {
    Ok(SqliteDb::open(db, mkey)?)
}

fn principal_in(db: &SqliteDb, name: &str) -> anyhow::Result<Principal> {
    use crate::kdc::db::PrincipalStore as _;
    Principal::parse_with_realm(name, db.realm())
        .with_context(|| format!("bad principal name {name:?}"))
}

pub async fn run(cmd: KdcCommand) -> anyhow::Result<()> {
    match cmd {
        KdcCommand::Init {
            realm,
            db,
            master_key,
        } => {
            if realm.is_empty() || realm.contains(['/', '@']) {
                bail!("bad realm name {realm:?}");
            }
            SqliteDb::create(&db, &realm, master_key.as_deref())?;
            println!("created realm {realm} in {}", db.display());
            Ok(())
        }
        KdcCommand::AddPrincipal {
            db,
            master_key,
            name,
            password_stdin,
            random_key: _,
            etypes,
            no_preauth,
            max_life,
            max_renew,
        } => {
            let etypes = parse_etypes(&etypes)?;
            let store = open_db(&db, master_key.as_deref())?;
            let p = principal_in(&store, &name)?;
            let mut flags = PrincipalFlags::DEFAULT.0;
            if no_preauth {
                flags &= !PrincipalFlags::REQUIRES_PREAUTH;
            }
            let opts = NewPrincipal {
                etypes,
                flags: PrincipalFlags(flags),
                max_life: Duration::from_secs(max_life.unwrap_or(0)),
                max_renew: Duration::from_secs(max_renew.unwrap_or(0)),
            };
            if password_stdin {
                let pw = read_password()?;
                store.add_principal(&p, NewKeys::Password(pw.as_bytes()), &opts)?;
            } else {
                store.add_principal(&p, NewKeys::Random, &opts)?;
            }
            println!("added {p}");
            Ok(())
        }
        KdcCommand::ChangeKeys {
            db,
            master_key,
            name,
            password_stdin,
            random_key: _,
            etypes,
        } => {
            let etypes = parse_etypes(&etypes)?;
            let store = open_db(&db, master_key.as_deref())?;
            let p = principal_in(&store, &name)?;
            let kvno = if password_stdin {
                let pw = read_password()?;
                store.change_keys(&p, NewKeys::Password(pw.as_bytes()), &etypes)?
            } else {
                store.change_keys(&p, NewKeys::Random, &etypes)?
            };
            println!("{p}: new keys at kvno {kvno}");
            Ok(())
        }
        KdcCommand::DeletePrincipal {
            db,
            master_key,
            name,
        } => {
            let store = open_db(&db, master_key.as_deref())?;
            let p = principal_in(&store, &name)?;
            store.delete_principal(&p)?;
            println!("deleted {p}");
            Ok(())
        }
        KdcCommand::List { db, master_key } => {
            let store = open_db(&db, master_key.as_deref())?;
            let mut out = std::io::stdout().lock();
            for p in store.list()? {
                writeln!(out, "{p}")?;
            }
            Ok(())
        }
        KdcCommand::ExportKeytab {
            db,
            master_key,
            name,
            out,
        } => {
            use crate::keytab::{Keytab, KeytabEntry};
            let store = open_db(&db, master_key.as_deref())?;
            let p = principal_in(&store, &name)?;
            let keys = store.all_keys(&p)?;
            let mut kt = if out.exists() {
                Keytab::load(&out)?
            } else {
                Keytab::new()
            };
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
                .unwrap_or(0);
            let n = keys.len();
            for k in keys {
                kt.push(KeytabEntry {
                    principal: p.clone(),
                    timestamp,
                    kvno: k.kvno,
                    key: k.key,
                });
            }
            kt.save(&out)?;
            println!("wrote {n} keys of {p} to {}", out.display());
            Ok(())
        }
        KdcCommand::Serve {
            db,
            master_key,
            listen,
            max_udp_reply,
            max_tcp_request,
        } => {
            let store = open_db(&db, master_key.as_deref())?;
            let realm = {
                use crate::kdc::db::PrincipalStore as _;
                store.realm().to_owned()
            };
            let kdc = Arc::new(Kdc::new(
                Arc::new(CachedStore::new(store)),
                KdcConfig::default(),
            ));
            let mut cfg = ServerConfig::new(listen);
            cfg.max_udp_reply = max_udp_reply;
            cfg.max_tcp_request = max_tcp_request;
            let bound = server::bind(cfg).await?;
            let addr = bound.local_addr();
            tracing::info!(%realm, %addr, "KDC serving on UDP and TCP");
            println!("roamgate kdc: serving realm {realm} on {addr} (udp+tcp)");
            let _ = std::io::stdout().flush();
            bound.run(kdc, shutdown_signal()).await;
            Ok(())
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
