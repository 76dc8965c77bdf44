//! `roamgate directory`: the directory role (docs/directory.md). `serve`
//! runs the `roamgate-directory` core over UDP (lookups and number
//! resolutions, one handler); `add-unit`, `remove-unit`, `list` and `show`
//! provision its store. MIP keys and call keys are never printed unless
//! `--show-keys` is given, and never logged.

pub mod config;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use roamgate_directory::record::{check_account, parse_principal, CallKey, DialledNumber};
use roamgate_directory::server::{Outcome, Stats};
use roamgate_directory::store::DirectoryStore;
use roamgate_directory::wire::MAX_MESSAGE;
use roamgate_directory::{Directory, IdentityCode, MipKey, SqliteStore, UnitRecord};
use roamgate_mip::rate_limit::{RateLimit, SourceLimiter};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ConfigFile as _;
use config::DirectoryFile;

/// How often audit entries past their retention are removed.
const AUDIT_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Length of a key made by `add-unit --generate-mip-key`.
const GENERATED_KEY_LEN: usize = 32;

#[derive(Subcommand, Debug)]
pub enum DirectoryCommand {
    /// Serve directory requests over UDP (AP-REQ in, AP-REP + KRB-PRIV out):
    /// lookups by identity code and resolutions of dialled numbers.
    Serve {
        /// TOML configuration (see config/directory.toml).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Add a unit's initiating information.
    AddUnit {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The unit's identity code (32 hex digits, from `roamgate unit init`).
        #[arg(long)]
        code: IdentityCode,
        /// The subscriber principal: the only client the directory answers
        /// for this code.
        #[arg(long)]
        principal: String,
        #[arg(long)]
        home_address: Ipv4Addr,
        #[arg(long)]
        home_agent: Ipv4Addr,
        /// MIP SPI: 256..2^31 selects HMAC-MD5, 2^31 and above HMAC-SHA256.
        #[arg(long)]
        spi: u32,
        /// File holding the MIP (MN-HA) key as hex, mode 0600.
        #[arg(long, value_name = "FILE", conflicts_with = "generate_mip_key")]
        mip_key_file: Option<PathBuf>,
        /// Make a random 32-byte MIP key (print it with `show --show-keys`
        /// to give it to the home agent).
        #[arg(long)]
        generate_mip_key: bool,
        #[arg(long)]
        account: String,
        /// E.164 number, e.g. +4930123456 (one unit per number).
        #[arg(long)]
        dialled_number: Option<String>,
        /// Keytab holding the key of the unit's call principal
        /// (`call/<name>@REALM`), from `roamgate kdc add-principal
        /// call/<name>@REALM --random-key` then `roamgate kdc export-keytab
        /// call/<name>@REALM --out FILE`. The newest kvno is taken, and
        /// in it the strongest etype.
        #[arg(long, value_name = "FILE")]
        call_keytab: Option<PathBuf>,
        /// Replace an existing entry for this code.
        #[arg(long)]
        replace: bool,
    },
    /// Remove a unit.
    RemoveUnit {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        code: IdentityCode,
    },
    /// List every unit (one line each).
    List {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Print the MIP keys too.
        #[arg(long)]
        show_keys: bool,
    },
    /// Show one unit.
    Show {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        code: IdentityCode,
        /// Print the MIP key too.
        #[arg(long)]
        show_keys: bool,
    },
}

impl DirectoryCommand {
    pub fn config_path(&self) -> &Path {
        match self {
            DirectoryCommand::Serve { config }
            | DirectoryCommand::AddUnit { config, .. }
            | DirectoryCommand::RemoveUnit { config, .. }
            | DirectoryCommand::List { config, .. }
            | DirectoryCommand::Show { config, .. } => config,
        }
    }
}

fn open_store(cfg: &DirectoryFile) -> anyhow::Result<SqliteStore> {
    let db = &cfg.directory.database;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::platform::fs::private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(SqliteStore::open(db)?)
}

/// The call key of `call_principal` in the keytab at `path`: of the newest
/// kvno, and in it of the strongest etype (`Etype::ALL`'s order).
pub fn call_key_from_keytab(
    path: &Path,
    call_principal: &roamgate_krb::Principal,
) -> anyhow::Result<CallKey> {
    let kt = roamgate_krb::keytab::Keytab::load(path)
        .with_context(|| format!("reading keytab {}", path.display()))?;
    let Some(kvno) = kt.keys_for(call_principal).map(|e| e.kvno).max() else {
        bail!(
            "keytab {} has no key for the call principal {call_principal}; make one with \
             `roamgate kdc add-principal {call_principal} --random-key` and \
             `roamgate kdc export-keytab {call_principal} --out {}`",
            path.display(),
            path.display()
        );
    };
    let entry = roamgate_krb_crypto::Etype::ALL
        .into_iter()
        .find_map(|e| kt.find(call_principal, Some(e), Some(kvno)))
        .context("keytab entry vanished")?;
    Ok(CallKey::from_key(entry.kvno, &entry.key))
}

/// One unit as text; the keys only when asked.
pub fn describe(r: &UnitRecord, show_keys: bool) -> String {
    let key = if show_keys {
        r.mip_key.expose_hex().to_string()
    } else {
        "<hidden: --show-keys>".to_owned()
    };
    let call_key = match &r.call_key {
        None => "none".to_owned(),
        Some(k) if show_keys => {
            format!("etype:{},kvno:{},{}", k.etype(), k.kvno(), &*k.expose_hex())
        }
        Some(k) => format!(
            "etype:{},kvno:{},<hidden: --show-keys>",
            k.etype(),
            k.kvno()
        ),
    };
    format!(
        "{} principal={} home_address={} home_agent={} spi={} mip_key={} account={} dialled_number={} call_principal={} call_key={}",
        r.code,
        r.principal,
        r.home_address,
        r.home_agent,
        r.mip_spi,
        key,
        r.account,
        r.dialled_number
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string),
        r.call_principal(),
        call_key,
    )
}

/// Runs a provisioning subcommand (not `serve`), writing to `out`.
pub fn provision(
    cmd: DirectoryCommand,
    cfg: &DirectoryFile,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let store = open_store(cfg)?;
    match cmd {
        DirectoryCommand::Serve { .. } => bail!("serve is not a provisioning command"),
        DirectoryCommand::AddUnit {
            code,
            principal,
            home_address,
            home_agent,
            spi,
            mip_key_file,
            generate_mip_key,
            account,
            dialled_number,
            call_keytab,
            replace,
            ..
        } => {
            let mip_key = match (mip_key_file, generate_mip_key) {
                (Some(f), false) => MipKey::new(&crate::platform::keyfile::read_hex_key(&f)?)?,
                (None, true) => MipKey::generate(GENERATED_KEY_LEN)?,
                _ => bail!("give the MIP key with --mip-key-file FILE or --generate-mip-key"),
            };
            check_account(&account)?;
            let principal = parse_principal(&principal)?;
            let call_key = call_keytab
                .as_deref()
                .map(|f| {
                    call_key_from_keytab(f, &roamgate_directory::record::call_principal(&principal))
                })
                .transpose()?;
            let rec = UnitRecord {
                code,
                principal,
                home_address,
                home_agent,
                mip_spi: spi,
                mip_key,
                account,
                dialled_number: dialled_number
                    .as_deref()
                    .map(DialledNumber::parse)
                    .transpose()?,
                call_key,
            };
            if replace {
                store.put(&rec)?;
            } else {
                store.add(&rec)?;
            }
            writeln!(out, "added {}", describe(&rec, false))?;
        }
        DirectoryCommand::RemoveUnit { code, .. } => {
            if !store.remove(&code)? {
                bail!("unit {code} is not in the directory");
            }
            writeln!(out, "removed {code}")?;
        }
        DirectoryCommand::List { show_keys, .. } => {
            for r in store.list()? {
                writeln!(out, "{}", describe(&r, show_keys))?;
            }
        }
        DirectoryCommand::Show {
            code, show_keys, ..
        } => match store.get(&code)? {
            Some(r) => writeln!(out, "{}", describe(&r, show_keys))?,
            None => bail!("unit {code} is not in the directory"),
        },
    }
    Ok(())
}

/// The Prometheus text of the directory's counters.
pub fn prometheus(s: &Stats, rate_limited: u64) -> String {
    let mut t = String::new();
    for (name, v) in [
        ("rate_limited", rate_limited),
        ("served", s.served),
        ("resolved", s.resolved),
        ("refused_unknown_number", s.refused_unknown_number),
        ("refused_auth", s.refused_auth),
        ("refused_not_authorised", s.refused_not_authorised),
        ("refused_unavailable", s.refused_unavailable),
        ("dropped", s.dropped),
        ("audit_failures", s.audit_failures),
    ] {
        let m = format!("roamgate_directory_{name}_total");
        t.push_str(&format!("# TYPE {m} counter\n{m} {v}\n"));
    }
    t
}

/// Serves until `shutdown`: a blocking thread owns the core (its SQLite
/// calls block) and the UDP socket.
pub async fn serve(cfg: DirectoryFile, shutdown: CancellationToken) -> anyhow::Result<()> {
    let keytab = roamgate_krb::keytab::Keytab::load(&cfg.kerberos.keytab)
        .with_context(|| format!("reading keytab {}", cfg.kerberos.keytab.display()))?;
    let core_cfg = cfg.core()?;
    if keytab.find(&core_cfg.service, None, None).is_none() {
        bail!(
            "keytab {} has no key for {}; export it with `roamgate kdc export-keytab {} --out {}`",
            cfg.kerberos.keytab.display(),
            core_cfg.service,
            core_cfg.service,
            cfg.kerberos.keytab.display()
        );
    }
    let store = open_store(&cfg)?;
    let sock = UdpSocket::bind(cfg.directory.listen)
        .with_context(|| format!("binding {}", cfg.directory.listen))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    info!(listen = %sock.local_addr()?, service = %core_cfg.service, database = %cfg.directory.database.display(), "directory ready");
    let stats = Arc::new(Mutex::new((Stats::default(), 0u64)));
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = cfg.metrics.addr()? {
        let listener = crate::metrics::bind(addr).await?;
        let s = stats.clone();
        let render: crate::metrics::Render = Arc::new(move || {
            let (st, limited) = *s.lock().unwrap_or_else(|p| p.into_inner());
            prometheus(&st, limited)
        });
        let stop = shutdown.clone();
        tasks.spawn(async move { crate::metrics::serve(listener, render, stop).await });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        let dir = Directory::new(store, keytab, core_cfg);
        let limits = RateLimit {
            burst: cfg.limits.burst,
            per_second: cfg.limits.per_second,
            max_sources: cfg.limits.max_sources,
        };
        let retention = Duration::from_secs(cfg.directory.audit_retention_days * 86_400);
        tokio::task::spawn_blocking(move || {
            serve_loop(dir, &sock, &stop, &stats, limits, retention)
        })
    };
    shutdown.cancelled().await;
    stop.store(true, Ordering::Relaxed);
    let res = worker.await.context("directory thread")?;
    tasks.shutdown().await;
    res
}

fn serve_loop<S: DirectoryStore, K: roamgate_krb::ap::ServiceKeys>(
    mut dir: Directory<S, K>,
    sock: &UdpSocket,
    stop: &AtomicBool,
    stats: &Mutex<(Stats, u64)>,
    limits: RateLimit,
    retention: Duration,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let mut sources = SourceLimiter::new(limits);
    let mut rate_limited = 0u64;
    let mut next_prune = SystemTime::now();
    while !stop.load(Ordering::Relaxed) {
        if !retention.is_zero() && SystemTime::now() >= next_prune {
            next_prune = SystemTime::now() + AUDIT_PRUNE_EVERY;
            match dir.store().audit_prune(SystemTime::now() - retention) {
                Ok(0) => {}
                Ok(n) => info!(
                    removed = n,
                    "directory: audit entries past their retention removed"
                ),
                Err(e) => warn!(error = %e, "directory: pruning the audit log failed"),
            }
        }
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                warn!(error = %e, "directory: receive failed");
                continue;
            }
        };
        // Over its source's limit: no answer and no audit row, so that a
        // flood cannot grow the audit table faster than the limit.
        if !sources.allow(peer.ip(), SystemTime::now()) {
            rate_limited += 1;
            stats.lock().unwrap_or_else(|p| p.into_inner()).1 = rate_limited;
            continue;
        }
        let h = dir.handle(&buf[..n], SystemTime::now());
        match &h.outcome {
            Outcome::Served { code, client } => {
                info!(%peer, %code, %client, "directory: served")
            }
            Outcome::Refused {
                code,
                client,
                refusal,
                audit_failed,
            } => {
                let client = client.as_ref().map(ToString::to_string);
                warn!(%peer, %code, client = client.as_deref().unwrap_or("-"), cause = %refusal, audit_failed, "directory: refused");
            }
            Outcome::Resolved {
                number,
                client,
                callee,
                call_principal,
            } => {
                info!(%peer, %number, %client, %callee, %call_principal, "directory: resolved")
            }
            Outcome::ResolveRefused {
                number,
                client,
                refusal,
                audit_failed,
            } => {
                let client = client.as_ref().map(ToString::to_string);
                warn!(%peer, %number, client = client.as_deref().unwrap_or("-"), cause = %refusal, audit_failed, "directory: resolve refused");
            }
            Outcome::Dropped(e) => debug!(%peer, error = %e, "directory: dropped"),
        }
        if let Some(reply) = h.reply {
            if let Err(e) = sock.send_to(&reply, peer) {
                warn!(%peer, error = %e, "directory: send failed");
            }
        }
        *stats.lock().unwrap_or_else(|p| p.into_inner()) = (dir.stats(), rate_limited);
    }
    Ok(())
}

/// Entry point of `roamgate directory`.
pub async fn run(cmd: DirectoryCommand) -> anyhow::Result<()> {
    let cfg = DirectoryFile::load(cmd.config_path())?;
    if let DirectoryCommand::Serve { .. } = cmd {
        crate::logging::init(cfg.log.format, &cfg.log.level);
        let shutdown = CancellationToken::new();
        crate::gateway::cancel_on_signals(shutdown.clone())?;
        return serve(cfg, shutdown).await;
    }
    provision(cmd, &cfg, &mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn cfg(dir: &Path) -> DirectoryFile {
        let mut c = DirectoryFile::default();
        c.directory.database = dir.join("state/directory.sqlite");
        c
    }

    fn run(c: &DirectoryFile, args: &[&str]) -> anyhow::Result<String> {
        let mut argv = vec!["roamgate", "directory"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv)?;
        let crate::cli::Command::Directory { command } = cli.command else {
            panic!("not a directory command")
        };
        let mut out = Vec::new();
        provision(command, c, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    const CODE: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn provisioning_never_prints_keys_unless_asked() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path());
        let key = tmp.path().join("mip.key");
        std::fs::write(&key, "5a".repeat(16)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The call principal's keytab: an older kvno, and two etypes at
        // the newest; the strongest of the newest is taken.
        let call_kt = tmp.path().join("call.keytab");
        {
            use roamgate_krb::keytab::{Keytab, KeytabEntry};
            use roamgate_krb_crypto::{Etype, Key};
            let cp = roamgate_krb::Principal::parse("call/unit-a@EXAMPLE.ORG").unwrap();
            let mut kt = Keytab::new();
            for (kvno, etype, b) in [
                (1, Etype::Aes256CtsHmacSha384192, 0x11),
                (2, Etype::Aes128CtsHmacSha196, 0x22),
                (2, Etype::Aes256CtsHmacSha196, 0xc4),
            ] {
                kt.push(KeytabEntry {
                    principal: cp.clone(),
                    timestamp: 0,
                    kvno,
                    key: Key::new(etype, &vec![b; etype.key_len()]).unwrap(),
                });
            }
            kt.save(&call_kt).unwrap();
        }
        let add = [
            "add-unit",
            "-c",
            "x",
            "--code",
            CODE,
            "--principal",
            "unit-a@EXAMPLE.ORG",
            "--home-address",
            "10.1.0.10",
            "--home-agent",
            "10.1.0.1",
            "--spi",
            "4096",
            "--mip-key-file",
            key.to_str().unwrap(),
            "--account",
            "acct-1",
            "--dialled-number",
            "+4930555",
            "--call-keytab",
            call_kt.to_str().unwrap(),
        ];
        let out = run(&c, &add).unwrap();
        assert!(out.starts_with(&format!("added {CODE}")), "{out}");
        let secret = "5a".repeat(16);
        assert!(!out.contains(&secret));
        let err = run(&c, &add).unwrap_err();
        assert!(
            err.to_string().contains("already in the directory"),
            "{err}"
        );
        let call_secret = "c4".repeat(32);
        let list = run(&c, &["list", "-c", "x"]).unwrap();
        assert!(
            list.contains("mip_key=<hidden: --show-keys>") && !list.contains(&secret),
            "{list}"
        );
        assert!(
            list.contains("call_principal=call/unit-a@EXAMPLE.ORG")
                && list.contains("call_key=etype:18,kvno:2,<hidden: --show-keys>")
                && !list.contains(&call_secret),
            "{list}"
        );
        let show = run(&c, &["show", "-c", "x", "--code", CODE]).unwrap();
        assert!(
            !show.contains(&secret) && !show.contains(&call_secret),
            "{show}"
        );
        let show = run(&c, &["show", "-c", "x", "--code", CODE, "--show-keys"]).unwrap();
        assert!(show.contains(&format!("mip_key={secret}")), "{show}");
        assert!(
            show.contains(&format!("call_key=etype:18,kvno:2,{call_secret}")),
            "{show}"
        );
        // The number names one unit: another unit may not take it.
        let other = "ffeeddccbbaa99887766554433221100";
        let mut dup = add.to_vec();
        dup[4] = other;
        dup.truncate(dup.len() - 2);
        let err = run(&c, &dup).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "dialled number +4930555 already belongs to unit {CODE}"
            )),
            "{err}"
        );
        // Without a call key: list says so.
        let last = dup.len() - 1;
        dup[last] = "+4930556";
        run(&c, &dup).unwrap();
        let list = run(&c, &["list", "-c", "x"]).unwrap();
        assert!(list.contains("call_key=none"), "{list}");
        // A keytab without the call principal's key is refused, naming it.
        let mut wrong = dup.clone();
        wrong[4] = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
        wrong[6] = "unit-b@EXAMPLE.ORG";
        let last = wrong.len() - 1;
        wrong[last] = "+4930557";
        wrong.push("--call-keytab");
        wrong.push(call_kt.to_str().unwrap());
        let err = run(&c, &wrong).unwrap_err();
        assert!(
            err.to_string()
                .contains("no key for the call principal call/unit-b@EXAMPLE.ORG"),
            "{err}"
        );
        run(&c, &["remove-unit", "-c", "x", "--code", other]).unwrap();
        assert!(show.contains("dialled_number=+4930555"), "{show}");
        let mode = std::fs::metadata(&c.directory.database)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        run(&c, &["remove-unit", "-c", "x", "--code", CODE]).unwrap();
        assert!(run(&c, &["show", "-c", "x", "--code", CODE]).is_err());
        assert!(run(&c, &["remove-unit", "-c", "x", "--code", CODE]).is_err());
    }

    #[test]
    fn bad_provisioning_input_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path());
        let base = |spi: &str, extra: &[&'static str]| {
            let mut v = vec![
                "add-unit",
                "-c",
                "x",
                "--code",
                CODE,
                "--principal",
                "u@R",
                "--home-address",
                "10.1.0.10",
                "--home-agent",
                "10.1.0.1",
                "--account",
                "a",
            ];
            v.push("--spi");
            v.push(Box::leak(spi.to_owned().into_boxed_str()));
            v.extend_from_slice(extra);
            v
        };
        let err = run(&c, &base("4096", &[])).unwrap_err();
        assert!(err.to_string().contains("--mip-key-file"), "{err}");
        let err = run(&c, &base("7", &["--generate-mip-key"])).unwrap_err();
        assert!(err.to_string().contains("SPI 7 is reserved"), "{err}");
        // A key file others can read is refused.
        let key = tmp.path().join("k");
        std::fs::write(&key, "00".repeat(16)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let k: &'static str = Box::leak(key.to_str().unwrap().to_owned().into_boxed_str());
        let err = run(&c, &base("4096", &["--mip-key-file", k])).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(run(&c, &base("4096", &["--generate-mip-key"])).is_ok());
    }

    #[test]
    fn metrics_text_names_every_counter() {
        let t = prometheus(
            &Stats {
                served: 3,
                ..Default::default()
            },
            7,
        );
        assert!(t.contains("roamgate_directory_served_total 3"));
        assert!(t.contains("roamgate_directory_rate_limited_total 7"));
        assert!(t.contains("roamgate_directory_refused_not_authorised_total 0"));
    }

    /// `serve` over real UDP on loopback: a ticket from the KDC core in
    /// the unit's name fetches the record; another unit's is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_answers_over_udp() {
        use roamgate_directory::client::{build_request, ClientError};
        use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientSecret, TgsExchange};
        use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags, PrincipalStore};
        use roamgate_krb::kdc::{Kdc, KdcConfig};
        use roamgate_krb::keytab::{Keytab, KeytabEntry};
        use roamgate_krb::Principal;
        use roamgate_krb_crypto::Etype;

        const SERVICE: &str = "directory/dir.example.org@EXAMPLE.ORG";
        let p = |s: &str| Principal::parse(s).unwrap();
        let db = std::sync::Arc::new(MemoryStore::new("EXAMPLE.ORG"));
        let et = [Etype::Aes256CtsHmacSha196];
        db.add_random(
            &Principal::krbtgt("EXAMPLE.ORG"),
            &et,
            PrincipalFlags::DEFAULT,
        );
        for u in ["unit-a@EXAMPLE.ORG", "unit-b@EXAMPLE.ORG", SERVICE] {
            db.add_random(&p(u), &et, PrincipalFlags::DEFAULT);
        }
        let kdc = Kdc::new(db.clone(), KdcConfig::default());
        let ticket = |client: &str| {
            let now = SystemTime::now();
            let keys = db.get(&p(client)).unwrap().unwrap();
            let secret = ClientSecret::Keys(keys.keys.iter().map(|k| k.key.clone()).collect());
            let mut ex = AsExchange::new(p(client), secret, AsOptions::default()).unwrap();
            let mut req = ex.first_request(now).unwrap();
            let tgt = loop {
                match ex
                    .handle_reply(&kdc.handle(&req, now).unwrap(), now)
                    .unwrap()
                {
                    AsStep::Send(r) => req = r,
                    AsStep::Done(c) => break *c,
                }
            };
            let tgs = TgsExchange::new(&tgt, p(SERVICE), 0).unwrap();
            tgs.handle_reply(&kdc.handle(&tgs.request(now).unwrap(), now).unwrap())
                .unwrap()
        };

        let tmp = tempfile::tempdir().unwrap();
        let mut c = cfg(tmp.path());
        let mut kt = Keytab::new();
        for k in &db.get(&p(SERVICE)).unwrap().unwrap().keys {
            kt.push(KeytabEntry {
                principal: p(SERVICE),
                timestamp: 0,
                kvno: k.kvno,
                key: k.key.clone(),
            });
        }
        c.kerberos.keytab = tmp.path().join("directory.keytab");
        kt.save(&c.kerberos.keytab).unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        c.directory.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        c.limits.burst = 5;
        c.limits.per_second = 1;
        let db_path = c.directory.database.clone();
        run(
            &c,
            &[
                "add-unit",
                "-c",
                "x",
                "--code",
                CODE,
                "--principal",
                "unit-a@EXAMPLE.ORG",
                "--home-address",
                "10.1.0.10",
                "--home-agent",
                "10.1.0.1",
                "--spi",
                "4096",
                "--generate-mip-key",
                "--account",
                "acct-1",
                "--dialled-number",
                "+4930555",
            ],
        )
        .unwrap();

        let listen = c.directory.listen;
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(c, shutdown.clone()));
        let code: IdentityCode = CODE.parse().unwrap();
        let ask = move |cred: roamgate_krb::credential::Credential| {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let (req, pending) = build_request(&cred, code, SystemTime::now()).unwrap();
            let mut buf = vec![0u8; MAX_MESSAGE];
            // The server may still be binding: retry a few times.
            for _ in 0..20 {
                sock.send_to(&req, listen).unwrap();
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    return pending.open(&buf[..n], SystemTime::now()).map_err(Box::new);
                }
            }
            panic!("no answer from the directory");
        };
        let a = ticket("unit-a@EXAMPLE.ORG");
        let b = ticket("unit-b@EXAMPLE.ORG");
        // The same loop answers resolves: unit-a resolves its number;
        // unit-b, no unit's subscriber here, is refused.
        let resolve = move |cred: roamgate_krb::credential::Credential| {
            use roamgate_directory::client::build_resolve_request;
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let n = DialledNumber::parse("+4930555").unwrap();
            let (req, pending) = build_resolve_request(&cred, &n, SystemTime::now()).unwrap();
            let mut buf = vec![0u8; MAX_MESSAGE];
            sock.send_to(&req, listen).unwrap();
            let (len, _) = sock.recv_from(&mut buf).unwrap();
            pending
                .open(&buf[..len], SystemTime::now())
                .map_err(Box::new)
        };
        let (a1, b1) = (a.clone(), b.clone());
        let (ra, rb, res_a, res_b) =
            tokio::task::spawn_blocking(move || (ask(a), ask(b), resolve(a1), resolve(b1)))
                .await
                .unwrap();
        let res = res_a.unwrap();
        assert_eq!(res.call_principal.to_string(), "call/unit-a@EXAMPLE.ORG");
        assert_eq!(res.home_address, Ipv4Addr::new(10, 1, 0, 10));
        assert!(
            matches!(
                res_b.as_ref().map_err(|e| &**e),
                Err(ClientError::ResolveRefused { .. })
            ),
            "{res_b:?}"
        );
        let rec = ra.unwrap();
        assert_eq!(rec.code, code);
        assert_eq!(rec.home_address, Ipv4Addr::new(10, 1, 0, 10));
        assert!(
            matches!(
                rb.as_ref().map_err(|e| &**e),
                Err(ClientError::Refused { .. })
            ),
            "{rb:?}"
        );

        // A burst from one source past its limit: one token is left, the
        // rest get no answer and no audit row.
        let a2 = ticket("unit-a@EXAMPLE.ORG");
        let answered = tokio::task::spawn_blocking(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            for _ in 0..6 {
                let (req, _) = build_request(&a2, code, SystemTime::now()).unwrap();
                sock.send_to(&req, listen).unwrap();
            }
            let mut buf = vec![0u8; MAX_MESSAGE];
            let mut n = 0;
            while sock.recv_from(&mut buf).is_ok() {
                n += 1;
            }
            n
        })
        .await
        .unwrap();
        assert_eq!(answered, 1, "burst 5, four spent, refill 1/s");
        shutdown.cancel();
        server.await.unwrap().unwrap();
        let audit = SqliteStore::open(&db_path).unwrap().audit_log(100).unwrap();
        assert_eq!(audit.len(), 5, "{audit:?}");
        assert!(
            audit
                .iter()
                .any(|e| e.outcome == "resolved: call/unit-a@EXAMPLE.ORG"
                    && e.number.as_ref().map(|n| n.digits()) == Some("4930555")),
            "{audit:?}"
        );
    }
}
