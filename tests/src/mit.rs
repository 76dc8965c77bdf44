//! An MIT krb5kdc on loopback for interop tests and the KDC benchmark.
//!
//! [`MitKdc::start`] makes a temporary directory with its own `krb5.conf`
//! and `kdc.conf`, creates a database with `kdb5_util create -s`, and starts
//! `krb5kdc -n` on a free loopback port that serves both UDP and TCP. Add
//! principals with [`MitKdc::add_principal`], export keytabs with
//! [`MitKdc::export_keytab`], and run MIT's client tools with
//! [`MitKdc::command`], which points them at this realm only. Dropping the
//! fixture kills the KDC and removes the directory.
//!
//! Needs the Debian packages krb5-kdc, krb5-user and krb5-admin-server; not
//! root.
//!
//! For the interop tests against either KDC: [`have`] and [`skip_without`]
//! check for the tools, and [`KerberosCapture`] records a KDC's traffic with
//! tshark and decodes it, decrypted with a keytab (tshark on `lo` needs root
//! or capture rights).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// All four AES enctypes, by MIT's names, strongest first.
pub const ALL_ENCTYPES: [&str; 4] = [
    "aes256-cts-hmac-sha384-192",
    "aes128-cts-hmac-sha256-128",
    "aes256-cts-hmac-sha1-96",
    "aes128-cts-hmac-sha1-96",
];

/// MIT's name for an RFC 3961 etype number (17..=20).
pub fn enctype_name(etype: i32) -> Option<&'static str> {
    Some(match etype {
        17 => "aes128-cts-hmac-sha1-96",
        18 => "aes256-cts-hmac-sha1-96",
        19 => "aes128-cts-hmac-sha256-128",
        20 => "aes256-cts-hmac-sha384-192",
        _ => return None,
    })
}

/// Whether `tool` is on the `PATH`.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `true`, after saying which test is skipped and why, when one of `tools`
/// is missing; `packages` names what to install.
pub fn skip_without(tools: &[&str], packages: &str) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return false;
    }
    eprintln!(
        "skipping: {} not installed ({packages})",
        missing.join(", ")
    );
    true
}

/// How long tshark may take to start capturing.
const CAPTURE_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Waits after tshark says it captures and before it is stopped, so that
/// no packet of the exchange in between is lost.
const CAPTURE_SETTLE_AFTER_START: Duration = Duration::from_millis(300);
const CAPTURE_SETTLE_BEFORE_STOP: Duration = Duration::from_millis(500);

/// A tshark capture on `lo` of one KDC port, written to a pcap file.
/// Dropping it stops tshark.
pub struct KerberosCapture {
    child: Option<Child>,
    pcap: PathBuf,
    port: u16,
}

impl KerberosCapture {
    /// Starts tshark and returns once it is capturing. tshark drops its
    /// privileges to write: `pcap`'s directory must be writable by it.
    pub fn start(port: u16, pcap: &Path) -> Result<Self> {
        use std::io::Read;
        let mut child = Command::new("tshark")
            .args(["-i", "lo", "-f", &format!("port {port}"), "-w"])
            .arg(pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tshark")?;
        let mut stderr = child.stderr.take().context("tshark's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut acc = Vec::new();
            let mut b = [0u8; 256];
            let mut told = false;
            while let Ok(n) = stderr.read(&mut b) {
                if n == 0 {
                    break;
                }
                acc.extend_from_slice(&b[..n]);
                if !told && String::from_utf8_lossy(&acc).contains("Capturing on") {
                    let _ = tx.send(());
                    told = true;
                }
            }
        });
        let capture = Self {
            child: Some(child),
            pcap: pcap.to_owned(),
            port,
        };
        rx.recv_timeout(CAPTURE_START_TIMEOUT)
            .context("tshark did not start capturing")?;
        std::thread::sleep(CAPTURE_SETTLE_AFTER_START);
        Ok(capture)
    }

    /// Stops tshark with SIGINT, which makes it flush and close the file.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        std::thread::sleep(CAPTURE_SETTLE_BEFORE_STOP);
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .context("sending SIGINT to tshark")?;
        child.wait().context("waiting for tshark")?;
        Ok(())
    }

    /// tshark's reading of the capture with `extra` arguments (`-V`, or
    /// `-q -z expert`): the KDC port decoded as Kerberos, decrypted with
    /// the keys in `keytab`. An error if tshark fails.
    pub fn decode(&self, keytab: &Path, extra: &[&str]) -> Result<String> {
        let port = self.port;
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.pcap)
            .args(["-d", &format!("udp.port=={port},kerberos")])
            .args(["-d", &format!("tcp.port=={port},kerberos")])
            .args(["-o", "kerberos.decrypt:TRUE", "-o"])
            .arg(format!("kerberos.file:{}", keytab.display()))
            .args(extra)
            .output()
            .context("running tshark -r")?;
        if !out.status.success() {
            bail!(
                "tshark -r {} failed ({}): {}",
                self.pcap.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for KerberosCapture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How the KDC is set up.
#[derive(Clone, Debug)]
pub struct MitKdcConfig {
    pub realm: String,
    /// Added to the KDC's clock (`krb5kdc -T`), to test clock skew.
    pub time_offset_secs: i64,
    /// Require pre-authentication for every new principal (`+preauth`).
    pub require_preauth: bool,
    pub max_life: String,
    pub max_renewable_life: String,
    /// `[dbmodules] disable_last_success = true, disable_lockout = true`:
    /// the KDC no longer writes to its database on every AS exchange
    /// (MIT's own performance advice; off by default, as MIT ships).
    pub no_db_writes: bool,
    /// Serve on this address (e.g. in a network namespace, started from a
    /// thread inside it) instead of a free loopback port.
    pub listen: Option<SocketAddr>,
}

impl Default for MitKdcConfig {
    fn default() -> Self {
        Self {
            realm: "ROAMGATE.TEST".to_owned(),
            time_offset_secs: 0,
            require_preauth: true,
            max_life: "10h".to_owned(),
            max_renewable_life: "7d".to_owned(),
            no_db_writes: false,
            listen: None,
        }
    }
}

/// A running MIT krb5kdc with its own realm in a temporary directory.
pub struct MitKdc {
    pub realm: String,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

const MASTER_PASSWORD: &str = "roamgate-test-master";
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A loopback port that is free for both TCP and UDP right now.
pub fn free_loopback_port() -> Result<u16> {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").context("binding a TCP probe port")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no loopback port free for both TCP and UDP after 50 tries")
}

impl MitKdc {
    /// Starts a KDC for realm ROAMGATE.TEST with default settings.
    pub fn start() -> Result<Self> {
        Self::start_with(MitKdcConfig::default())
    }

    pub fn start_with(cfg: MitKdcConfig) -> Result<Self> {
        // A port can be taken between probing and krb5kdc binding it
        // (other tests run at the same time): retry with a new port.
        let mut last_err = None;
        for _ in 0..5 {
            let addr = match cfg.listen {
                Some(a) => a,
                None => SocketAddr::from(([127, 0, 0, 1], free_loopback_port()?)),
            };
            let mut kdc = Self {
                realm: cfg.realm.clone(),
                addr,
                dir: tempfile::Builder::new()
                    .prefix("roamgate-mit-kdc-")
                    .tempdir()
                    .context("creating the MIT KDC temp dir")?,
                child: None,
            };
            kdc.write_config(&cfg)?;
            kdc.create_database()?;
            match kdc.spawn(&cfg) {
                Ok(()) => return Ok(kdc),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("krb5kdc did not start")))
    }

    /// The temporary directory holding config, database and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn krb5_conf(&self) -> PathBuf {
        self.dir().join("krb5.conf")
    }

    pub fn kdc_conf(&self) -> PathBuf {
        self.dir().join("kdc.conf")
    }

    /// `HOST:PORT` as `--kdc` takes it.
    pub fn kdc_arg(&self) -> String {
        self.addr.to_string()
    }

    /// A path inside the fixture's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    fn write_config(&self, cfg: &MitKdcConfig) -> Result<()> {
        let d = self.dir().display().to_string();
        let realm = &cfg.realm;
        let addr = self.addr;
        let mut krb5 = String::new();
        writeln!(
            krb5,
            "[libdefaults]\n  default_realm = {realm}\n  dns_lookup_kdc = false\n  \
             dns_lookup_realm = false\n  rdns = false\n  dns_canonicalize_hostname = false\n  \
             ignore_acceptor_hostname = true\n  forwardable = true\n  \
             default_ccache_name = FILE:{d}/ccache\n  default_keytab_name = FILE:{d}/krb5.keytab\n  \
             permitted_enctypes = {all}\n  default_tkt_enctypes = {all}\n  default_tgs_enctypes = {all}\n\n\
             [realms]\n  {realm} = {{\n    kdc = {addr}\n    admin_server = {addr}\n  }}\n\n\
             [domain_realm]\n  localhost = {realm}\n",
            all = ALL_ENCTYPES.join(" ")
        )?;
        let supported: Vec<String> = ALL_ENCTYPES.iter().map(|e| format!("{e}:normal")).collect();
        let mut kdc = String::new();
        writeln!(
            kdc,
            "[kdcdefaults]\n  kdc_listen = {addr}\n  kdc_tcp_listen = {addr}\n\n\
             [realms]\n  {realm} = {{\n    database_name = {d}/principal\n    \
             key_stash_file = {d}/stash\n    acl_file = {d}/kadm5.acl\n    \
             master_key_type = aes256-cts-hmac-sha1-96\n    supported_enctypes = {sup}\n    \
             max_life = {life}\n    max_renewable_life = {renew}\n    \
             default_principal_flags = {flags}\n  }}\n\n\
             [logging]\n  kdc = FILE:{d}/kdc.log\n  admin_server = FILE:{d}/kadmin.log\n  \
             default = FILE:{d}/krb5lib.log\n",
            sup = supported.join(" "),
            life = cfg.max_life,
            renew = cfg.max_renewable_life,
            flags = if cfg.require_preauth {
                "+preauth"
            } else {
                "-preauth"
            },
        )?;
        if cfg.no_db_writes {
            writeln!(
                kdc,
                "\n[dbmodules]\n  {realm} = {{\n    disable_last_success = true\n    \
                 disable_lockout = true\n  }}"
            )?;
        }
        std::fs::write(self.krb5_conf(), krb5).context("writing krb5.conf")?;
        std::fs::write(self.kdc_conf(), kdc).context("writing kdc.conf")?;
        std::fs::write(self.path("kadm5.acl"), "").context("writing kadm5.acl")?;
        Ok(())
    }

    /// An MIT tool (`kinit`, `klist`, `kvno`, `kadmin.local`, ...) whose
    /// configuration is this fixture's only. Its default ccache is
    /// `<dir>/ccache`.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5_KDC_PROFILE", self.kdc_conf())
            .env(
                "KRB5CCNAME",
                format!("FILE:{}", self.path("ccache").display()),
            )
            .env(
                "KRB5_KTNAME",
                format!("FILE:{}", self.path("krb5.keytab").display()),
            )
            .env("KRB5RCACHEDIR", self.dir())
            .env_remove("KRB5_TRACE")
            .stdin(Stdio::null());
        c
    }

    /// Runs a command to completion; an error (with its output) if it fails.
    pub fn run(&self, mut cmd: Command, what: &str) -> Result<Output> {
        run_ok(&mut cmd, what)
    }

    fn create_database(&self) -> Result<()> {
        let mut c = self.command("kdb5_util");
        c.args(["create", "-s", "-r", &self.realm, "-P", MASTER_PASSWORD]);
        self.run(c, "kdb5_util create -s").map(drop)
    }

    fn spawn(&mut self, cfg: &MitKdcConfig) -> Result<()> {
        let mut c = self.command("krb5kdc");
        c.args([
            "-n",
            "-r",
            &cfg.realm,
            "-P",
            &self.path("krb5kdc.pid").display().to_string(),
        ]);
        if cfg.time_offset_secs != 0 {
            c.args(["-T", &cfg.time_offset_secs.to_string()]);
        }
        let log = std::fs::File::create(self.path("krb5kdc.stderr"))?;
        c.stdout(Stdio::null()).stderr(log);
        let child = c
            .spawn()
            .context("starting krb5kdc (is krb5-kdc installed?)")?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "krb5kdc exited with {status} on port {}: {}",
                        self.addr.port(),
                        std::fs::read_to_string(self.path("krb5kdc.stderr")).unwrap_or_default()
                    );
                }
            }
            // Ready when it accepts TCP and its log says it is serving.
            let log = std::fs::read_to_string(self.path("kdc.log")).unwrap_or_default();
            if log.contains("commencing operation")
                && TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "krb5kdc did not start serving on {} within {START_TIMEOUT:?}",
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `addprinc` with a password and, if given, only these enctypes
    /// (MIT names, e.g. `aes256-cts-hmac-sha1-96`).
    pub fn add_principal(&self, name: &str, password: &str, enctypes: &[&str]) -> Result<()> {
        if password.contains('"') {
            bail!("test passwords must not contain '\"' (kadmin.local quoting)");
        }
        let mut q = format!("addprinc -pw \"{password}\"");
        if !enctypes.is_empty() {
            let e: Vec<String> = enctypes.iter().map(|e| format!("{e}:normal")).collect();
            write!(q, " -e {}", e.join(","))?;
        }
        write!(q, " {name}")?;
        self.kadmin(&q)
    }

    /// `addprinc -randkey`, e.g. for services.
    pub fn add_random_principal(&self, name: &str, enctypes: &[&str]) -> Result<()> {
        let mut q = "addprinc -randkey".to_owned();
        if !enctypes.is_empty() {
            let e: Vec<String> = enctypes.iter().map(|e| format!("{e}:normal")).collect();
            write!(q, " -e {}", e.join(","))?;
        }
        write!(q, " {name}")?;
        self.kadmin(&q)
    }

    /// Writes the principal's current keys to a keytab (`ktadd -norandkey`).
    pub fn export_keytab(&self, name: &str, keytab: &Path) -> Result<()> {
        self.kadmin(&format!("ktadd -k {} -norandkey {name}", keytab.display()))
    }

    /// Runs one `kadmin.local -q` query against this realm.
    pub fn kadmin(&self, query: &str) -> Result<()> {
        let mut c = self.command("kadmin.local");
        c.args(["-r", &self.realm, "-q", query]);
        let out = self.run(c, &format!("kadmin.local -q {query:?}"))?;
        // kadmin.local exits 0 even when the query fails; it says so on stderr.
        let err = String::from_utf8_lossy(&out.stderr);
        if err.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error")
                || l.contains("failed")
                || l.contains("not found")
                || l.starts_with("usage:")
        }) {
            bail!("kadmin.local -q {query:?}: {err}");
        }
        Ok(())
    }

    /// MIT `kinit` with a password on stdin, into `ccache`.
    pub fn kinit_password(&self, principal: &str, password: &str, ccache: &Path) -> Result<()> {
        use std::io::Write;
        let mut c = self.command("kinit");
        c.args(["-c", &format!("FILE:{}", ccache.display()), principal])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().context("running kinit")?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{password}")?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kinit {principal} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The KDC's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("kdc.log")).unwrap_or_default()
    }
}

impl Drop for MitKdc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The TempDir removes the directory when it drops after this.
    }
}

/// Runs `cmd` to completion, capturing its output; an error naming `what`,
/// with the output, if it fails.
pub fn run_ok(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_mit() -> bool {
        Command::new("krb5kdc")
            .arg("-?")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    }

    #[test]
    fn fixture_serves_mit_kinit_and_cleans_up() {
        if !have_mit() {
            eprintln!("skipping: krb5kdc not installed");
            return;
        }
        let kdc = MitKdc::start().unwrap();
        kdc.add_principal("alice", "correct horse", &[]).unwrap();
        let cc = kdc.path("alice.cc");
        kdc.kinit_password("alice", "correct horse", &cc).unwrap();
        let mut klist = kdc.command("klist");
        klist.args(["-c", &format!("FILE:{}", cc.display())]);
        let out = kdc.run(klist, "klist").unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("krbtgt/ROAMGATE.TEST@ROAMGATE.TEST"),
            "{text}"
        );
        assert!(kdc.kinit_password("alice", "wrong", &cc).is_err());
        let dir = kdc.dir().to_owned();
        let addr = kdc.addr;
        drop(kdc);
        assert!(!dir.exists());
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    }
}
