//! A FreeRADIUS accounting server on loopback, the real peer of roamgate's
//! RADIUS accounting (issue 13, "Real peer").
//!
//! [`FreeRadius::start`] writes a config tree of its own into a temporary
//! directory (`NAME.conf` with one `acct` listener on 127.0.0.1 and a free
//! UDP port, one client with the shared secret, the `detail` module writing
//! every Accounting-Request to `detail` in that directory, then `ok`) and a
//! `dictionary` with roamgate's Vendor-Specific attributes (docs/billing.md
//! §4), so the detail file names them. It runs Debian's `freeradius -f -l
//! stdout -d DIR -n NAME` and returns once it logs "Ready to process
//! requests" (well under a second here). The system's `/etc/freeradius` is
//! never read, and the system service's ports (1812/1813) are not used.
//!
//! [`FreeRadius::records`] parses the detail file; [`FreeRadius::stop`]
//! sends SIGTERM (dropping the fixture does too) and the directory goes
//! with the fixture.
//!
//! Needs the Debian package `freeradius` (and `freeradius-utils` for
//! radclient). Runs as root: with no `user`/`group` in the config,
//! FreeRADIUS 3.2 keeps the identity it was started with.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

/// Roamgate's VSA dictionary, as docs/billing.md §4 gives it.
pub const ROAMGATE_DICTIONARY: &str = "\
VENDOR          roamgate        32473
BEGIN-VENDOR    roamgate
ATTRIBUTE       roamgate-charge-minor-units     1       integer64
ATTRIBUTE       roamgate-currency               2       string
END-VENDOR      roamgate
";

/// How long FreeRADIUS may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The config's (and so the log's and pid file's) name.
const NAME: &str = "roamgate-test";

/// A loopback UDP port free right now.
pub fn free_udp_port() -> Result<u16> {
    let s = UdpSocket::bind("127.0.0.1:0").context("binding a UDP probe port")?;
    Ok(s.local_addr()?.port())
}

/// Whether Debian's `freeradius` is installed.
pub fn installed() -> bool {
    crate::mit::have("freeradius")
}

/// One record of the detail file: its attributes by FreeRADIUS's names,
/// string values without their quotes. FreeRADIUS adds `Timestamp` (and
/// keeps the first of an attribute that appears twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailRecord {
    pub attributes: BTreeMap<String, String>,
}

impl DetailRecord {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }
}

/// Parses a detail file: records separated by blank lines, each a header
/// line (the time) then `\tName = value` lines.
pub fn parse_detail(text: &str) -> Vec<DetailRecord> {
    let mut out = Vec::new();
    let mut cur: Option<BTreeMap<String, String>> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if let Some(a) = cur.take() {
                out.push(DetailRecord { attributes: a });
            }
            continue;
        }
        if !line.starts_with(['\t', ' ']) {
            // A record's header line.
            if let Some(a) = cur.replace(BTreeMap::new()) {
                out.push(DetailRecord { attributes: a });
            }
            continue;
        }
        let Some((name, value)) = line.trim().split_once(" = ") else {
            continue;
        };
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        cur.get_or_insert_with(BTreeMap::new)
            .entry(name.to_owned())
            .or_insert_with(|| value.to_owned());
    }
    if let Some(a) = cur {
        out.push(DetailRecord { attributes: a });
    }
    out
}

/// A running FreeRADIUS with its own config tree.
pub struct FreeRadius {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    started_in: Duration,
    /// The network namespace it runs in (its own 127.0.0.1); `None`: ours.
    netns: Option<String>,
}

impl FreeRadius {
    /// Starts FreeRADIUS on a free loopback port with `secret` for the
    /// client 127.0.0.1.
    pub fn start(secret: &str) -> Result<Self> {
        Self::start_on(free_udp_port()?, secret)
    }

    /// Starts FreeRADIUS accounting on 127.0.0.1:`port`.
    pub fn start_on(port: u16, secret: &str) -> Result<Self> {
        Self::start_in(None, port, secret)
    }

    /// Starts FreeRADIUS accounting on 127.0.0.1:`port` of the network
    /// namespace `netns` (a scenario's host, beside the billing service).
    pub fn start_in(netns: Option<&str>, port: u16, secret: &str) -> Result<Self> {
        if secret.is_empty() || secret.contains(['"', '\\', '\n']) {
            bail!("the test secret must be plain text");
        }
        let dir = tempfile::tempdir().context("FreeRADIUS temp dir")?;
        let mut fr = Self {
            dir,
            port,
            child: None,
            log: Arc::default(),
            started_in: Duration::ZERO,
            netns: netns.map(str::to_owned),
        };
        fr.write_config(secret)?;
        fr.spawn()?;
        Ok(fr)
    }

    /// The accounting port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as roamgate's `radius.server` takes it.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The config directory, which also holds `dictionary` (for radclient's
    /// `-d`) and the detail file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn detail_path(&self) -> PathBuf {
        self.dir.path().join("detail")
    }

    /// How long FreeRADIUS took from spawn to "Ready to process requests".
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// What FreeRADIUS logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The records of the detail file (none if nothing was written yet).
    pub fn records(&self) -> Result<Vec<DetailRecord>> {
        match std::fs::read_to_string(self.detail_path()) {
            Ok(t) => Ok(parse_detail(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).context("reading FreeRADIUS's detail file"),
        }
    }

    /// Stops FreeRADIUS with SIGTERM (SIGKILL if it does not exit in
    /// time); the config tree and detail file remain until drop.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id()).context("pid")?;
        // SAFETY: kill(2) on our own child's pid, which has not been waited
        // for yet, so it cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("FreeRADIUS ignored SIGTERM for {STOP_TIMEOUT:?}; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn write_config(&self, secret: &str) -> Result<()> {
        let d = self.dir.path().display();
        let port = self.port;
        // Only what an accounting server needs; no `user`/`group`, so it
        // stays root as the tests are, and every path is in the temp dir.
        let conf = format!(
            r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = {d}
confdir = {d}
modconfdir = {d}
logdir = {d}
run_dir = {d}
db_dir = {d}
radacctdir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/{NAME}.pid
max_request_time = 5
cleanup_delay = 0
max_requests = 4096
hostname_lookups = no
log {{
    destination = stdout
    auth = no
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 1
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 2
    max_requests_per_server = 0
}}
client localhost {{
    ipaddr = 127.0.0.1
    secret = "{secret}"
}}
modules {{
    detail {{
        filename = {d}/detail
        escape_filenames = no
        permissions = 0600
        header = "%t"
    }}
    always ok {{
        rcode = ok
    }}
}}
server default {{
    listen {{
        type = acct
        ipaddr = 127.0.0.1
        port = {port}
    }}
    accounting {{
        detail
        ok
    }}
}}
"#
        );
        std::fs::write(self.dir.path().join(format!("{NAME}.conf")), conf)
            .context("writing FreeRADIUS's config")?;
        // FreeRADIUS reads `dictionary` from its config dir after its own.
        std::fs::write(self.dir.path().join("dictionary"), ROAMGATE_DICTIONARY)
            .context("writing the dictionary")?;
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg("freeradius");
                c
            }
            None => Command::new("freeradius"),
        };
        let mut child = cmd
            .args(["-f", "-l", "stdout", "-d"])
            .arg(self.dir.path())
            .args(["-n", NAME])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting freeradius")?;
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&self.log);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("Ready to process requests") {
                        let _ = tx.send(());
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        drop(tx);
        let start = std::time::Instant::now();
        let ready = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => break true,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break false,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if child.try_wait()?.is_some() || start.elapsed() > START_TIMEOUT {
                        break false;
                    }
                }
            }
        };
        self.child = Some(child);
        self.started_in = start.elapsed();
        if !ready {
            let _ = self.stop();
            // The readers may still be appending the last lines.
            std::thread::sleep(Duration::from_millis(50));
            bail!(
                "FreeRADIUS did not become ready on 127.0.0.1:{}:\n{}",
                self.port,
                self.log()
            );
        }
        Ok(())
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_detail_file() {
        let text = "Sun Dec  6 03:10:48 2026\n\
                    \tAcct-Status-Type = Start\n\
                    \tAcct-Session-Id = \"abc\"\n\
                    \troamgate-charge-minor-units = 160\n\
                    \tTimestamp = 1796526648\n\
                    \n\
                    Sun Dec  6 03:10:49 2026\n\
                    \tAcct-Status-Type = Stop\n\
                    \tUser-Name = \"a b\"\n\n";
        let r = parse_detail(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].get("Acct-Session-Id"), Some("abc"));
        assert_eq!(r[0].get("roamgate-charge-minor-units"), Some("160"));
        assert_eq!(r[1].get("Acct-Status-Type"), Some("Stop"));
        assert_eq!(r[1].get("User-Name"), Some("a b"));
    }
}
