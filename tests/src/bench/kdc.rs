//! KDC benchmark: the same async UDP load client drives AS exchanges (with
//! pre-authentication: PREAUTH_REQUIRED first, then PA-ENC-TIMESTAMP) and
//! TGS exchanges against the roamgate KDC and against MIT krb5kdc, one
//! after the other in one run.
//!
//! Also home of [`RoamgateKdc`], a roamgate KDC with its own realm in a
//! temporary directory, used by `tests/tests/krb_roamgate_kdc.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use roamgate_krb::kdc::db::{NewKeys, NewPrincipal, PrincipalFlags, PrincipalStore as _, SqliteDb};
use roamgate_krb::kdc::probe::{self, RequestSpec};
use roamgate_krb::kdc::server::{self, ServerConfig};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};
use serde_json::json;
use tokio::net::UdpSocket;

use crate::mit::{MitKdc, MitKdcConfig};

/// How the roamgate KDC under test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The real `roamgate kdc serve` binary as a child process.
    Binary,
    /// The library's server on a tokio runtime in this process.
    InProcess,
}

/// Options of a [`RoamgateKdc`].
#[derive(Clone, Debug)]
pub struct RoamgateKdcOptions {
    pub realm: String,
    pub max_udp_reply: usize,
    /// Use the binary if it is built and wired (default), or force a mode.
    pub mode: Option<Mode>,
    pub config: KdcConfig,
    /// In-process mode: tokio worker threads and UDP worker tasks.
    pub threads: usize,
}

impl Default for RoamgateKdcOptions {
    fn default() -> Self {
        Self {
            realm: "ROAMGATE.TEST".to_owned(),
            max_udp_reply: ServerConfig::DEFAULT_MAX_UDP_REPLY,
            mode: None,
            config: KdcConfig::default(),
            threads: 2,
        }
    }
}

/// The `roamgate` binary, if it is built and has `kdc serve`.
pub fn roamgate_binary() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // A release build (the benchmark) uses only a release binary: a debug
    // KDC would be measured at a fraction of its speed.
    let profiles: &[&str] = if cfg!(debug_assertions) {
        &["debug", "release"]
    } else {
        &["release"]
    };
    profiles
        .iter()
        .map(|p| target.join(p).join("roamgate"))
        .filter(|b| b.is_file())
        .find(|b| {
            Command::new(b)
                .args(["kdc", "serve", "--help"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// A roamgate KDC serving its own realm from a temporary directory.
pub struct RoamgateKdc {
    pub realm: String,
    pub addr: SocketAddr,
    pub mode: Mode,
    dir: tempfile::TempDir,
    db_path: PathBuf,
    child: Option<Child>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The in-process KDC core, for inspecting counters.
    pub core: Option<Arc<Kdc>>,
}

impl RoamgateKdc {
    /// Creates the realm database; principals are added before [`start`].
    pub fn create(opts: &RoamgateKdcOptions) -> Result<RoamgateKdcBuilder> {
        let dir = tempfile::Builder::new()
            .prefix("roamgate-kdc-")
            .tempdir()
            .context("creating the roamgate KDC temp dir")?;
        let db_path = dir.path().join("kdc.sqlite");
        let mode = match opts.mode {
            Some(m) => m,
            None if roamgate_binary().is_some() => Mode::Binary,
            None => Mode::InProcess,
        };
        let bin = roamgate_binary();
        if mode == Mode::Binary {
            let bin = bin.as_ref().context("the roamgate binary is not built")?;
            run_ok(
                Command::new(bin).args([
                    "kdc",
                    "init",
                    "--realm",
                    &opts.realm,
                    "--db",
                    &db_path.display().to_string(),
                ]),
                "roamgate kdc init",
            )?;
        } else {
            SqliteDb::create(&db_path, &opts.realm, None)?;
        }
        Ok(RoamgateKdcBuilder {
            opts: opts.clone(),
            mode,
            bin,
            dir,
            db_path,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The KDC process's resident memory in KiB (the test process's own in
    /// in-process mode).
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = match &self.child {
            Some(c) => c.id().to_string(),
            None => "self".to_owned(),
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Is the KDC process still running?
    pub fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => self.thread.as_ref().is_some_and(|t| !t.is_finished()),
        }
    }

    /// Writes an MIT krb5.conf that points at this KDC only. With
    /// `etype`, the client permits and asks for only that enctype; with
    /// `tcp`, `udp_preference_limit = 1` makes it use TCP.
    pub fn write_krb5_conf(&self, path: &Path, etype: Option<&str>, tcp: bool) -> Result<()> {
        let d = self.dir().display().to_string();
        let all = crate::mit::ALL_ENCTYPES.join(" ");
        let et = etype.unwrap_or(&all);
        let udp_pref = if tcp {
            "  udp_preference_limit = 1\n"
        } else {
            ""
        };
        let text = format!(
            "[libdefaults]\n  default_realm = {realm}\n  dns_lookup_kdc = false\n  \
             dns_lookup_realm = false\n  rdns = false\n  dns_canonicalize_hostname = false\n  \
             forwardable = true\n  default_ccache_name = FILE:{d}/ccache\n  \
             permitted_enctypes = {et}\n  default_tkt_enctypes = {et}\n  \
             default_tgs_enctypes = {et}\n{udp_pref}\n\
             [realms]\n  {realm} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n",
            realm = self.realm,
            port = self.addr.port(),
        );
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// A roamgate KDC's database, before the server starts.
pub struct RoamgateKdcBuilder {
    opts: RoamgateKdcOptions,
    mode: Mode,
    bin: Option<PathBuf>,
    dir: tempfile::TempDir,
    db_path: PathBuf,
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    crate::mit::run_ok(cmd.stdin(Stdio::null()), what)
}

impl RoamgateKdcBuilder {
    fn principal(&self, name: &str) -> Result<Principal> {
        Ok(Principal::parse_with_realm(name, &self.opts.realm)?)
    }

    fn db(&self) -> Result<SqliteDb> {
        Ok(SqliteDb::open(&self.db_path, None)?)
    }

    /// Adds a principal with a password (pre-authentication required) and
    /// keys of `etypes` (all four if empty).
    pub fn add_password(&self, name: &str, password: &str, etypes: &[Etype]) -> Result<&Self> {
        if let (Mode::Binary, Some(bin)) = (self.mode, &self.bin) {
            use std::io::Write as _;
            let mut c = Command::new(bin);
            c.args(["kdc", "add-principal", "--db"])
                .arg(&self.db_path)
                .args([name, "--password-stdin"]);
            if !etypes.is_empty() {
                let list: Vec<String> = etypes.iter().map(|e| e.to_i32().to_string()).collect();
                c.arg("--etypes").arg(list.join(","));
            }
            let mut child = c
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("running roamgate kdc add-principal")?;
            if let Some(mut stdin) = child.stdin.take() {
                writeln!(stdin, "{password}")?;
            }
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "roamgate kdc add-principal {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            return Ok(self);
        }
        let opts = NewPrincipal {
            etypes: if etypes.is_empty() {
                Etype::ALL.to_vec()
            } else {
                etypes.to_vec()
            },
            ..NewPrincipal::default()
        };
        self.db()?.add_principal(
            &self.principal(name)?,
            NewKeys::Password(password.as_bytes()),
            &opts,
        )?;
        Ok(self)
    }

    /// Adds a principal with random keys of all four etypes.
    pub fn add_random(&self, name: &str) -> Result<&Self> {
        if let (Mode::Binary, Some(bin)) = (self.mode, &self.bin) {
            run_ok(
                Command::new(bin)
                    .args(["kdc", "add-principal", "--db"])
                    .arg(&self.db_path)
                    .args([name, "--random-key"]),
                "roamgate kdc add-principal --random-key",
            )?;
            return Ok(self);
        }
        self.db()?.add_principal(
            &self.principal(name)?,
            NewKeys::Random,
            &NewPrincipal {
                flags: PrincipalFlags::DEFAULT,
                ..NewPrincipal::default()
            },
        )?;
        Ok(self)
    }

    /// Writes (appends) a principal's keys to an MIT keytab.
    pub fn export_keytab(&self, name: &str, out: &Path) -> Result<&Self> {
        if let (Mode::Binary, Some(bin)) = (self.mode, &self.bin) {
            run_ok(
                Command::new(bin)
                    .args(["kdc", "export-keytab", "--db"])
                    .arg(&self.db_path)
                    .arg(name)
                    .arg("--out")
                    .arg(out),
                "roamgate kdc export-keytab",
            )?;
            return Ok(self);
        }
        let db = self.db()?;
        let p = self.principal(name)?;
        let mut kt = if out.exists() {
            roamgate_krb::keytab::Keytab::load(out)?
        } else {
            roamgate_krb::keytab::Keytab::new()
        };
        for k in db.all_keys(&p)? {
            kt.push(roamgate_krb::keytab::KeytabEntry {
                principal: p.clone(),
                timestamp: 0,
                kvno: k.kvno,
                key: k.key,
            });
        }
        kt.save(out)?;
        Ok(self)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts serving on a free loopback port (UDP and TCP).
    pub fn start(self) -> Result<RoamgateKdc> {
        match self.mode {
            Mode::Binary => self.start_binary(),
            Mode::InProcess => self.start_in_process(),
        }
    }

    fn start_binary(self) -> Result<RoamgateKdc> {
        let bin = self.bin.clone().context("no roamgate binary")?;
        let port = crate::mit::free_loopback_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(self.dir().join("kdc.stderr"))?;
        let child = Command::new(bin)
            .args(["kdc", "serve", "--db"])
            .arg(&self.db_path)
            .args(["--listen", &addr.to_string()])
            .args(["--max-udp-reply", &self.opts.max_udp_reply.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting roamgate kdc serve")?;
        let mut kdc = RoamgateKdc {
            realm: self.opts.realm.clone(),
            addr,
            mode: Mode::Binary,
            dir: self.dir,
            db_path: self.db_path,
            child: Some(child),
            shutdown: None,
            thread: None,
            core: None,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !kdc.alive() {
                let log = std::fs::read_to_string(kdc.path("kdc.stderr")).unwrap_or_default();
                bail!("roamgate kdc serve exited: {log}");
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(kdc);
            }
            if Instant::now() > deadline {
                bail!("roamgate kdc serve did not start on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_in_process(self) -> Result<RoamgateKdc> {
        let db = SqliteDb::open(&self.db_path, None)?;
        let realm = db.realm().to_owned();
        let core = Arc::new(Kdc::new(
            Arc::new(roamgate_krb::kdc::db::CachedStore::new(db)),
            self.opts.config.clone(),
        ));
        // Port 0: the server binds UDP and then TCP on the same port.
        let mut cfg = ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.max_udp_reply = self.opts.max_udp_reply;
        cfg.udp_workers = self.opts.threads.max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.opts.threads.max(1))
            .thread_name("roamgate-kdc")
            .enable_all()
            .build()?;
        let bound = rt.block_on(server::bind(cfg))?;
        let addr = bound.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let core2 = Arc::clone(&core);
        let thread = std::thread::spawn(move || {
            rt.block_on(bound.run(core2, async move {
                let _ = rx.await;
            }));
        });
        Ok(RoamgateKdc {
            realm,
            addr,
            mode: Mode::InProcess,
            dir: self.dir,
            db_path: self.db_path,
            child: None,
            shutdown: Some(tx),
            thread: Some(thread),
            core: Some(core),
        })
    }
}

impl Drop for RoamgateKdc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The load client.

const REALM: &str = "ROAMGATE.TEST";
const USER: &str = "bench";
const PASSWORD: &str = "bench-password-1";
const SERVICE: &str = "host/bench.roamgate.test";
const ETYPE: Etype = Etype::Aes256CtsHmacSha196;
/// Requests in flight at once.
const CONCURRENCY: usize = 32;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(4);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exchange {
    As,
    Tgs,
}

/// What the load client needs to know about one KDC.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    client: Principal,
    service: Principal,
    krbtgt: Principal,
    user_key: Key,
    tgt: Option<(rasn_kerberos::Ticket, Key)>,
}

#[derive(Debug, Default)]
struct Outcome {
    latencies_us: Vec<u64>,
    failures: u64,
}

async fn roundtrip(sock: &UdpSocket, req: &[u8], buf: &mut [u8]) -> Result<usize> {
    sock.send(req).await?;
    let n = tokio::time::timeout(REQUEST_TIMEOUT, sock.recv(buf))
        .await
        .context("KDC did not answer in time")??;
    Ok(n)
}

/// One complete exchange; an error if it did not end in a valid reply.
async fn one_exchange(
    t: &Target,
    kind: Exchange,
    sock: &UdpSocket,
    buf: &mut [u8],
    nonce: u32,
) -> Result<()> {
    let now = SystemTime::now();
    match kind {
        Exchange::As => {
            let spec = RequestSpec {
                client: t.client.clone(),
                server: t.krbtgt.clone(),
                etypes: vec![ETYPE.to_i32()],
                options: 0,
                till: now + Duration::from_secs(3600),
                rtime: None,
                nonce,
            };
            // First request without pre-authentication.
            let req = probe::as_req(&spec, vec![])?;
            let n = roundtrip(sock, &req, buf).await?;
            match probe::error_code(&buf[..n]) {
                Some(25) => {}
                other => bail!("expected PREAUTH_REQUIRED, got {other:?}"),
            }
            let pa = probe::enc_timestamp(&t.user_key, SystemTime::now())?;
            let req = probe::as_req(&spec, vec![pa])?;
            let n = roundtrip(sock, &req, buf).await?;
            probe::read_as_rep(&buf[..n], &t.user_key, nonce)?;
        }
        Exchange::Tgs => {
            let (tgt, session) = t.tgt.as_ref().context("no TGT")?;
            let spec = RequestSpec {
                client: t.client.clone(),
                server: t.service.clone(),
                etypes: vec![ETYPE.to_i32()],
                options: 0,
                till: now + Duration::from_secs(3600),
                rtime: None,
                nonce,
            };
            let req = probe::tgs_req(&spec, tgt, session, None, now)?;
            let n = roundtrip(sock, &req, buf).await?;
            probe::read_tgs_rep(&buf[..n], session, None, nonce)?;
        }
    }
    Ok(())
}

/// Drives `kind` exchanges with CONCURRENCY workers for WARMUP + MEASURE;
/// records exchanges completed inside the measurement window.
async fn load(t: Arc<Target>, kind: Exchange) -> Result<Outcome> {
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let mut set = tokio::task::JoinSet::new();
    for w in 0..CONCURRENCY {
        let t = Arc::clone(&t);
        set.spawn(async move {
            let mut out = Outcome::default();
            let sock = UdpSocket::bind("127.0.0.1:0").await?;
            sock.connect(t.addr).await?;
            let mut buf = vec![0u8; 65_536];
            let mut i: u32 = 0;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                i = i.wrapping_add(1);
                let nonce = ((w as u32) << 24 | (i & 0x00ff_ffff)) & 0x7fff_ffff;
                let r = one_exchange(&t, kind, &sock, &mut buf, nonce).await;
                let done = Instant::now();
                if began >= measure_from && done <= end {
                    match r {
                        Ok(()) => out
                            .latencies_us
                            .push(u64::try_from((done - began).as_micros()).unwrap_or(u64::MAX)),
                        Err(_) => out.failures += 1,
                    }
                }
            }
            anyhow::Ok(out)
        });
    }
    let mut all = Outcome::default();
    while let Some(r) = set.join_next().await {
        let o = r??;
        all.latencies_us.extend(o.latencies_us);
        all.failures += o.failures;
    }
    Ok(all)
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

struct Measured {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    failures: u64,
}

fn summarize(mut o: Outcome) -> Measured {
    o.latencies_us.sort_unstable();
    Measured {
        per_s: o.latencies_us.len() as f64 / MEASURE.as_secs_f64(),
        p50_ms: percentile_ms(&o.latencies_us, 0.50),
        p99_ms: percentile_ms(&o.latencies_us, 0.99),
        failures: o.failures,
    }
}

async fn get_tgt(t: &Target) -> Result<(rasn_kerberos::Ticket, Key)> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(t.addr).await?;
    let mut buf = vec![0u8; 65_536];
    let spec = RequestSpec {
        client: t.client.clone(),
        server: t.krbtgt.clone(),
        etypes: vec![ETYPE.to_i32()],
        options: 0,
        till: SystemTime::now() + Duration::from_secs(8 * 3600),
        rtime: None,
        nonce: 4242,
    };
    let pa = probe::enc_timestamp(&t.user_key, SystemTime::now())?;
    let req = probe::as_req(&spec, vec![pa])?;
    let n = roundtrip(&sock, &req, &mut buf).await?;
    let issued =
        probe::read_as_rep(&buf[..n], &t.user_key, 4242).context("getting the benchmark TGT")?;
    Ok((issued.ticket, issued.session))
}

async fn measure(addr: SocketAddr) -> Result<(Measured, Measured)> {
    let client = Principal::parse_with_realm(USER, REALM)?;
    let user_key = Key::from_password(ETYPE, PASSWORD.as_bytes(), &client.default_salt(), None)?;
    let mut t = Target {
        addr,
        client,
        service: Principal::parse_with_realm(SERVICE, REALM)?,
        krbtgt: Principal::krbtgt(REALM),
        user_key,
        tgt: None,
    };
    t.tgt = Some(get_tgt(&t).await?);
    let t = Arc::new(t);
    let a = summarize(load(Arc::clone(&t), Exchange::As).await?);
    let g = summarize(load(t, Exchange::Tgs).await?);
    Ok((a, g))
}

/// The benchmark section `kdc`.
pub fn run() -> Result<serde_json::Value> {
    // The roamgate KDC.
    let b = RoamgateKdc::create(&RoamgateKdcOptions::default())?;
    b.add_password(USER, PASSWORD, &[])?.add_random(SERVICE)?;
    let rg = b.start()?;
    let mode = rg.mode;
    // MIT krb5kdc with the same principals.
    let mit = MitKdc::start_with(MitKdcConfig {
        realm: REALM.to_owned(),
        ..MitKdcConfig::default()
    })?;
    mit.add_principal(USER, PASSWORD, &[])?;
    mit.add_random_principal(SERVICE, &[])?;

    // The load client: one thread, so that on a small machine it takes
    // the same share from either KDC.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (rg_as, rg_tgs) = rt.block_on(measure(rg.addr)).context("roamgate KDC")?;
    let (mit_as, mit_tgs) = rt.block_on(measure(mit.addr)).context("MIT krb5kdc")?;
    drop(rg);
    drop(mit);
    // MIT once more without its per-AS database writes (last-success and
    // lockout bookkeeping, on by default), the fastest MIT configuration.
    let mit2 = MitKdc::start_with(MitKdcConfig {
        realm: REALM.to_owned(),
        no_db_writes: true,
        ..MitKdcConfig::default()
    })?;
    mit2.add_principal(USER, PASSWORD, &[])?;
    mit2.add_random_principal(SERVICE, &[])?;
    let (mit2_as, mit2_tgs) = rt
        .block_on(measure(mit2.addr))
        .context("MIT krb5kdc without database writes")?;
    drop(mit2);
    // roamgate once more on a single thread, like MIT's single process.
    let b1 = RoamgateKdc::create(&RoamgateKdcOptions {
        mode: Some(Mode::InProcess),
        threads: 1,
        ..RoamgateKdcOptions::default()
    })?;
    b1.add_password(USER, PASSWORD, &[])?.add_random(SERVICE)?;
    let rg1 = b1.start()?;
    let (rg1_as, rg1_tgs) = rt
        .block_on(measure(rg1.addr))
        .context("roamgate KDC on one thread")?;
    drop(rg1);

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(json!({
        "roamgate_as_per_s": r2(rg_as.per_s),
        "mit_as_per_s": r2(mit_as.per_s),
        "roamgate_tgs_per_s": r2(rg_tgs.per_s),
        "mit_tgs_per_s": r2(mit_tgs.per_s),
        "ratio_as": r3(ratio(rg_as.per_s, mit_as.per_s)),
        "ratio_tgs": r3(ratio(rg_tgs.per_s, mit_tgs.per_s)),
        "roamgate_as_p50_ms": r3(rg_as.p50_ms),
        "roamgate_as_p99_ms": r3(rg_as.p99_ms),
        "mit_as_p50_ms": r3(mit_as.p50_ms),
        "mit_as_p99_ms": r3(mit_as.p99_ms),
        "roamgate_tgs_p50_ms": r3(rg_tgs.p50_ms),
        "roamgate_tgs_p99_ms": r3(rg_tgs.p99_ms),
        "mit_tgs_p50_ms": r3(mit_tgs.p50_ms),
        "mit_tgs_p99_ms": r3(mit_tgs.p99_ms),
        "mit_no_db_writes_as_per_s": r2(mit2_as.per_s),
        "mit_no_db_writes_tgs_per_s": r2(mit2_tgs.per_s),
        "mit_no_db_writes_as_p50_ms": r3(mit2_as.p50_ms),
        "mit_no_db_writes_as_p99_ms": r3(mit2_as.p99_ms),
        "mit_no_db_writes_tgs_p50_ms": r3(mit2_tgs.p50_ms),
        "mit_no_db_writes_tgs_p99_ms": r3(mit2_tgs.p99_ms),
        "ratio_as_vs_mit_no_db_writes": r3(ratio(rg_as.per_s, mit2_as.per_s)),
        "ratio_tgs_vs_mit_no_db_writes": r3(ratio(rg_tgs.per_s, mit2_tgs.per_s)),
        "roamgate_1thread_as_per_s": r2(rg1_as.per_s),
        "roamgate_1thread_tgs_per_s": r2(rg1_tgs.per_s),
        "roamgate_1thread_as_p50_ms": r3(rg1_as.p50_ms),
        "roamgate_1thread_as_p99_ms": r3(rg1_as.p99_ms),
        "roamgate_1thread_tgs_p50_ms": r3(rg1_tgs.p50_ms),
        "roamgate_1thread_tgs_p99_ms": r3(rg1_tgs.p99_ms),
        "ratio_as_1thread": r3(ratio(rg1_as.per_s, mit_as.per_s)),
        "ratio_tgs_1thread": r3(ratio(rg1_tgs.per_s, mit_tgs.per_s)),
        "failures": {
            "roamgate_1thread_as": rg1_as.failures,
            "roamgate_1thread_tgs": rg1_tgs.failures,
            "mit_no_db_writes_as": mit2_as.failures,
            "mit_no_db_writes_tgs": mit2_tgs.failures,
            "roamgate_as": rg_as.failures,
            "roamgate_tgs": rg_tgs.failures,
            "mit_as": mit_as.failures,
            "mit_tgs": mit_tgs.failures,
        },
        "concurrency": CONCURRENCY,
        "measure_s": MEASURE.as_secs_f64(),
        "etype": ETYPE.to_i32(),
        "transport": "udp",
        "mit_config": "mit_*: MIT defaults (db2, last-success/lockout writes on every AS); mit_no_db_writes_*: [dbmodules] disable_last_success, disable_lockout",
        "roamgate_mode": match mode { Mode::Binary => "binary", Mode::InProcess => "in-process" },
        "as_exchange": "AS-REQ -> PREAUTH_REQUIRED, AS-REQ with PA-ENC-TIMESTAMP -> AS-REP (decrypted)",
        "tgs_exchange": "TGS-REQ with PA-TGS-REQ -> TGS-REP (decrypted)",
    }))
}
