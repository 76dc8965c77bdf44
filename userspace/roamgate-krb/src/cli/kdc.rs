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

/// Where the principal database and its master key are.
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// Principal database (SQLite).
    #[arg(long)]
    db: PathBuf,
    /// Master key file (default: the database path plus ".mkey").
    #[arg(long)]
    master_key: Option<PathBuf>,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<SqliteDb> {
        Ok(SqliteDb::open(&self.db, self.master_key.as_deref())?)
    }
}

/// Where a principal's new keys come from.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// Read the password from the first line of stdin.
    #[arg(
        long,
        conflicts_with_all = ["random_key", "keytab"],
        required_unless_present_any = ["random_key", "keytab"]
    )]
    password_stdin: bool,
    /// Random keys (for services).
    #[arg(long, conflicts_with = "keytab")]
    random_key: bool,
    /// Take the principal's keys from this keytab (the newest kvno per
    /// etype), e.g. a unit's own from `roamgate unit export-keytab`: the
    /// key was made on the unit and never leaves it and the KDC.
    #[arg(long, value_name = "FILE")]
    keytab: Option<PathBuf>,
    /// Comma-separated etypes (numbers or MIT names); default all of
    /// 20, 18, 19, 17.
    #[arg(long, value_delimiter = ',')]
    etypes: Vec<String>,
}

impl KeyArgs {
    /// Calls `f` with the keys to derive and the etypes to derive them for.
    fn with_keys<T>(
        &self,
        principal: &Principal,
        f: impl FnOnce(NewKeys<'_>, Vec<Etype>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut etypes = parse_etypes(&self.etypes)?;
        if let Some(path) = &self.keytab {
            let kt = crate::keytab::Keytab::load(path)
                .with_context(|| format!("reading keytab {}", path.display()))?;
            let keys = kt.newest_keys(principal);
            if keys.is_empty() {
                bail!("keytab {} has no key for {principal}", path.display());
            }
            if self.etypes.is_empty() {
                etypes = keys.iter().map(|k| k.etype()).collect();
            }
            return f(NewKeys::Given(&keys), etypes);
        }
        if self.password_stdin {
            let pw = read_password()?;
            f(NewKeys::Password(pw.as_bytes()), etypes)
        } else {
            f(NewKeys::Random, etypes)
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum KdcCommand {
    /// Create a realm: its principal database, its master key file
    /// (PATH.mkey, mode 0600) and the krbtgt/REALM principal.
    Init {
        #[arg(long)]
        realm: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add a principal with a password read from stdin or a random key.
    AddPrincipal {
        #[command(flatten)]
        store: StoreArgs,
        /// `name@REALM` or `service/host@REALM` (the realm may be omitted).
        name: String,
        #[command(flatten)]
        keys: KeyArgs,
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
        #[command(flatten)]
        store: StoreArgs,
        name: String,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Remove a principal.
    DeletePrincipal {
        #[command(flatten)]
        store: StoreArgs,
        name: String,
    },
    /// List the principals.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write a principal's keys (every etype and kvno) to an MIT keytab,
    /// appending to the file if it exists.
    ExportKeytab {
        #[command(flatten)]
        store: StoreArgs,
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the KDC on UDP and TCP.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address for both UDP and TCP, e.g. 0.0.0.0:88.
        #[arg(long)]
        listen: SocketAddr,
        /// UDP replies longer than this get KRB_ERR_RESPONSE_TOO_BIG.
        #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_UDP_REPLY)]
        max_udp_reply: usize,
        /// The longest TCP request accepted, in bytes.
        #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_TCP_REQUEST)]
        max_tcp_request: usize,
        /// Concurrent TCP connections in all.
        #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_TCP_CONNECTIONS)]
        max_tcp_connections: usize,
        /// Concurrent TCP connections from one address (IPv6: one /64).
        #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_TCP_PER_SOURCE)]
        max_tcp_per_source: usize,
        /// Seconds a TCP client has to send each whole request.
        #[arg(long, default_value_t = ServerConfig::DEFAULT_TCP_REQUEST_TIMEOUT.as_secs())]
        tcp_request_timeout: u64,
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

fn principal_in(db: &SqliteDb, name: &str) -> anyhow::Result<Principal> {
    use crate::kdc::db::PrincipalStore as _;
    Principal::parse_with_realm(name, db.realm())
        .with_context(|| format!("bad principal name {name:?}"))
}

pub async fn run(cmd: KdcCommand) -> anyhow::Result<()> {
    match cmd {
        KdcCommand::Init { realm, store } => {
            if realm.is_empty() || realm.contains(['/', '@']) {
                bail!("bad realm name {realm:?}");
            }
            SqliteDb::create(&store.db, &realm, store.master_key.as_deref())?;
            println!("created realm {realm} in {}", store.db.display());
            Ok(())
        }
        KdcCommand::AddPrincipal {
            store,
            name,
            keys,
            no_preauth,
            max_life,
            max_renew,
        } => {
            let store = store.open()?;
            let p = principal_in(&store, &name)?;
            let mut flags = PrincipalFlags::DEFAULT.0;
            if no_preauth {
                flags &= !PrincipalFlags::REQUIRES_PREAUTH;
            }
            keys.with_keys(&p, |new, etypes| {
                let opts = NewPrincipal {
                    etypes,
                    flags: PrincipalFlags(flags),
                    max_life: Duration::from_secs(max_life.unwrap_or(0)),
                    max_renew: Duration::from_secs(max_renew.unwrap_or(0)),
                };
                Ok(store.add_principal(&p, new, &opts)?)
            })?;
            println!("added {p}");
            Ok(())
        }
        KdcCommand::ChangeKeys { store, name, keys } => {
            let store = store.open()?;
            let p = principal_in(&store, &name)?;
            let kvno =
                keys.with_keys(&p, |new, etypes| Ok(store.change_keys(&p, new, &etypes)?))?;
            println!("{p}: new keys at kvno {kvno}");
            Ok(())
        }
        KdcCommand::DeletePrincipal { store, name } => {
            let store = store.open()?;
            let p = principal_in(&store, &name)?;
            store.delete_principal(&p)?;
            println!("deleted {p}");
            Ok(())
        }
        KdcCommand::List { store } => {
            let store = store.open()?;
            let mut out = std::io::stdout().lock();
            for p in store.list()? {
                writeln!(out, "{p}")?;
            }
            Ok(())
        }
        KdcCommand::ExportKeytab { store, name, out } => {
            let store = store.open()?;
            let p = principal_in(&store, &name)?;
            let n = export_keytab(&store, &p, &out)?;
            println!("wrote {n} keys of {p} to {}", out.display());
            Ok(())
        }
        KdcCommand::Serve {
            store,
            listen,
            max_udp_reply,
            max_tcp_request,
            max_tcp_connections,
            max_tcp_per_source,
            tcp_request_timeout,
        } => {
            let mut cfg = ServerConfig::new(listen);
            cfg.max_udp_reply = max_udp_reply;
            cfg.max_tcp_request = max_tcp_request;
            cfg.max_tcp_connections = max_tcp_connections;
            cfg.max_tcp_per_source = max_tcp_per_source;
            cfg.tcp_request_timeout = std::time::Duration::from_secs(tcp_request_timeout);
            let (realm, addr, serving) = serve(store.open()?, cfg, shutdown_signal()).await?;
            println!("roamgate kdc: serving realm {realm} on {addr} (udp+tcp)");
            let _ = std::io::stdout().flush();
            serving.await;
            Ok(())
        }
    }
}

/// Appends every key of `p` to the keytab `out` (created if missing);
/// returns how many were written.
pub fn export_keytab(store: &SqliteDb, p: &Principal, out: &Path) -> anyhow::Result<usize> {
    use crate::keytab::{Keytab, KeytabEntry};
    let keys = store.all_keys(p)?;
    let mut kt = if out.exists() {
        Keytab::load(out)?
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
    kt.save(out)?;
    Ok(n)
}

/// Binds the KDC of `store` on `cfg.listen` (UDP and TCP); returns its
/// realm, the bound address and the future that serves until `shutdown`
/// completes. Binding errors come back before anything is served.
pub async fn serve(
    store: SqliteDb,
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<(String, SocketAddr, impl std::future::Future<Output = ()>)> {
    let realm = {
        use crate::kdc::db::PrincipalStore as _;
        store.realm().to_owned()
    };
    let kdc = Arc::new(Kdc::new(
        Arc::new(CachedStore::new(store)),
        KdcConfig::default(),
    ));
    let bound = server::bind(cfg).await?;
    let addr = bound.local_addr();
    tracing::info!(%realm, %addr, "KDC serving on UDP and TCP");
    Ok((realm, addr, bound.run(kdc, shutdown)))
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
