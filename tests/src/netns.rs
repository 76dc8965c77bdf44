//! Named network namespaces joined by veth pairs, for real-traffic tests.
//!
//! A [`Topology`] owns every namespace it creates (all share a unique prefix)
//! and removes them on drop, also when a test panics. Processes started with
//! [`Topology::spawn`] are killed first. The shell side is
//! `scripts/netns.sh`, usable by hand too.

use std::{
    fs::File,
    net::Ipv4Addr,
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// The `roamgate` binary built by `cargo xtask build` (debug profile unless
/// ROAMGATE_BIN says otherwise).
pub fn roamgate_bin() -> anyhow::Result<PathBuf> {
    let p = std::env::var_os("ROAMGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug/roamgate"));
    if !p.exists() {
        bail!(
            "{} does not exist: run `cargo build -p roamgate` (or `cargo xtask test`) first",
            p.display()
        );
    }
    Ok(p)
}

fn netns_sh() -> PathBuf {
    root().join("scripts/netns.sh")
}

/// The home side every topology shares: the correspondent on the home link
/// (`cn` 10.1.0.2 -- 10.1.0.1 `ha`), and the home agent's transit link to
/// the router `tr` (`ha` 192.0.2.1 -- 192.0.2.2 `tr`).
pub const CN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
pub const HA_CN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const HA_TR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const TR_HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The networks of `tr`'s uplinks, in order: `tr` is .1, the far end .2.
pub const UPLINK_NETS: [&str; 2] = ["198.51.100", "203.0.113"];

/// Runs `f` on a new thread inside network namespace `ns` (only the network
/// namespace: bpffs stays visible).
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<T>> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        enter_netns(&path)?;
        f()
    })
}

/// Runs `f` on a thread that has joined network namespace `ns`, and waits
/// for it.
pub fn in_netns<T: Send>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(move || {
            enter_netns(&path)?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("thread in {ns} panicked"))?
    })
}

fn enter_netns(path: &str) -> anyhow::Result<()> {
    let fd = File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns with a valid namespace fd changes only this thread's
    // network namespace.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

pub struct Topology {
    prefix: String,
    children: Vec<Child>,
    /// RX and TX queues of each veth made from now on (see
    /// [`Topology::set_veth_queues`]).
    veth_queues: u32,
}

impl Topology {
    /// A new, empty topology; `tag` names it in `ip netns list`. Its
    /// namespaces start with `rg`, or with `$ROAMGATE_NETNS_PREFIX` when set
    /// (engineers sharing a machine keep theirs apart by name).
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let lead = std::env::var("ROAMGATE_NETNS_PREFIX").unwrap_or_else(|_| "rg".into());
        let prefix = format!(
            "{lead}{}{}-{}-",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::Relaxed),
            tag
        );
        Ok(Self {
            prefix,
            children: Vec::new(),
            veth_queues: 1,
        })
    }

    /// Veth pairs made after this have `n` RX and TX queues each (1 by
    /// default): a generator on CPU k sends on queue k, and the receiving
    /// veth runs each queue's NAPI on the CPU that fed it.
    pub fn set_veth_queues(&mut self, n: u32) {
        self.veth_queues = n.max(1);
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Full namespace name for a short host name.
    pub fn ns(&self, host: &str) -> String {
        format!("{}{}", self.prefix, host)
    }

    fn script(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(netns_sh())
            .args(args)
            .output()
            .context("running scripts/netns.sh")?;
        if !out.status.success() {
            bail!(
                "scripts/netns.sh {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Creates host `host` (namespace prefix+host) with loopback up.
    pub fn add_host(&mut self, host: &str) -> anyhow::Result<String> {
        let ns = self.ns(host);
        self.script(&["add", &ns])?;
        Ok(ns)
    }

    /// Joins two hosts with a veth pair; addresses in CIDR form.
    pub fn link(
        &mut self,
        (host_a, if_a, cidr_a): (&str, &str, &str),
        (host_b, if_b, cidr_b): (&str, &str, &str),
    ) -> anyhow::Result<()> {
        let (a, b) = (self.ns(host_a), self.ns(host_b));
        let q = self.veth_queues.to_string();
        self.script(&["veth", &a, if_a, cidr_a, &b, if_b, cidr_b, &q])
    }

    /// Creates bridge `bridge` in `host`, addressed (CIDR) and up.
    pub fn bridge(&mut self, host: &str, bridge: &str, cidr: &str) -> anyhow::Result<()> {
        let ns = self.ns(host);
        self.script(&["bridge", &ns, bridge, cidr])
    }

    /// Joins `host_a` (addressed) to the bridge `bridge` of `host_b` with a
    /// veth pair whose `host_b` end is a port of that bridge.
    pub fn port(
        &mut self,
        (host_a, if_a, cidr_a): (&str, &str, &str),
        (host_b, if_b, bridge): (&str, &str, &str),
    ) -> anyhow::Result<()> {
        let (a, b) = (self.ns(host_a), self.ns(host_b));
        self.script(&["port", &a, if_a, cidr_a, &b, if_b, bridge])
    }

    /// What XDP forwarding between veths needs on each of `ifaces` (host,
    /// interface): GRO on (receivers of XDP-redirected frames need veth
    /// NAPI) and TX checksum offload off (locally generated packets would
    /// carry partial checksums that nobody completes once XDP has
    /// redirected them).
    pub fn tune_for_xdp(&self, ifaces: &[(&str, &str)]) -> anyhow::Result<()> {
        for (h, i) in ifaces {
            self.exec_ok(h, &["ethtool", "-K", i, "gro", "on"])?;
            self.exec_ok(h, &["ethtool", "-K", i, "tx", "off"])?;
        }
        Ok(())
    }

    /// Turns reverse-path filtering off in `hosts` (tunnelled and
    /// asymmetric paths).
    pub fn no_rp_filter(&self, hosts: &[&str]) -> anyhow::Result<()> {
        for h in hosts {
            for k in ["all", "default"] {
                self.exec_ok(
                    h,
                    &["sysctl", "-qw", &format!("net.ipv4.conf.{k}.rp_filter=0")],
                )?;
            }
        }
        Ok(())
    }

    pub fn route(&mut self, host: &str, dest: &str, via: &str) -> anyhow::Result<()> {
        let ns = self.ns(host);
        self.script(&["route", &ns, dest, via])
    }

    pub fn forward(&mut self, host: &str) -> anyhow::Result<()> {
        let ns = self.ns(host);
        self.script(&["forward", &ns])
    }

    /// Creates the home side ([`CN`], [`HA_CN`], [`HA_TR`], [`TR_HA`]): hosts
    /// `cn`, `ha` and `tr`, the home link `cn0`--`ha-cn` and the transit link
    /// `ha-tr`--`tr-ha`.
    pub fn home_side(&mut self) -> anyhow::Result<()> {
        for h in ["cn", "ha", "tr"] {
            self.add_host(h)?;
        }
        self.link(("cn", "cn0", "10.1.0.2/24"), ("ha", "ha-cn", "10.1.0.1/24"))?;
        self.link(
            ("ha", "ha-tr", "192.0.2.1/24"),
            ("tr", "tr-ha", "192.0.2.2/24"),
        )
    }

    /// Links `tr` to existing hosts: `uplinks[i]` = (tr's interface, host,
    /// its interface) on [`UPLINK_NETS`]`[i]`, `tr` as .1 and the host as .2.
    pub fn uplinks(&mut self, uplinks: &[(&str, &str, &str)]) -> anyhow::Result<()> {
        if uplinks.len() > UPLINK_NETS.len() {
            bail!("tr has {} uplink networks", UPLINK_NETS.len());
        }
        for ((tr_if, host, host_if), net) in uplinks.iter().zip(UPLINK_NETS) {
            self.link(
                ("tr", tr_if, &format!("{net}.1/24")),
                (host, host_if, &format!("{net}.2/24")),
            )?;
        }
        Ok(())
    }

    /// The routes of a base station `host`: the units' home prefix
    /// `home_net` is on its access bridge `bridge` (a unit answers ARP for
    /// its home address there), and whatever comes from that bridge goes up
    /// to its proxy manager `pm` (a unit's packets for the home prefix too),
    /// through routing table `table`.
    pub fn base_station_routes(
        &mut self,
        host: &str,
        bridge: &str,
        home_net: &str,
        pm: &str,
        table: &str,
    ) -> anyhow::Result<()> {
        self.exec_ok(host, &["ip", "route", "add", home_net, "dev", bridge])?;
        self.route(host, "default", pm)?;
        self.exec_ok(
            host,
            &[
                "ip", "rule", "add", "iif", bridge, "table", table, "priority", "100",
            ],
        )?;
        self.exec_ok(
            host,
            &["ip", "route", "add", "default", "via", pm, "table", table],
        )?;
        Ok(())
    }

    /// Sets the MTU of each (host, interface).
    pub fn set_mtu(&self, ifaces: &[(&str, &str)], mtu: u16) -> anyhow::Result<()> {
        let mtu = mtu.to_string();
        for (h, i) in ifaces {
            self.exec_ok(h, &["ip", "link", "set", "dev", i, "mtu", &mtu])?;
        }
        Ok(())
    }

    /// Pings each (host, address) once, so that every neighbour is resolved
    /// before XDP, which leaves unresolved ones to the stack, needs it.
    pub fn warm_neighbours(&self, pairs: &[(&str, Ipv4Addr)]) -> anyhow::Result<()> {
        for (h, dst) in pairs {
            self.exec_ok(h, &["ping", "-c", "1", "-W", "2", &dst.to_string()])?;
        }
        Ok(())
    }

    /// Gives `host` the address `home`/32 on `iface` as the source of its
    /// default route via `via`: a host whose applications use a home
    /// address that a mobile node or care-of end carries for it.
    pub fn hold_address(
        &self,
        host: &str,
        iface: &str,
        home: Ipv4Addr,
        via: Ipv4Addr,
    ) -> anyhow::Result<()> {
        let (home, via) = (home.to_string(), via.to_string());
        self.exec_ok(
            host,
            &["ip", "addr", "add", &format!("{home}/32"), "dev", iface],
        )?;
        self.exec_ok(
            host,
            &["ip", "route", "add", "default", "via", &via, "src", &home],
        )?;
        Ok(())
    }

    /// A command that runs inside `host`'s network namespace only. Unlike
    /// `ip netns exec`, nsenter keeps the mount namespace, so the host's
    /// bpffs at /sys/fs/bpf stays visible for pinning.
    pub fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns(host)))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs a command in `host` to completion.
    pub fn exec(&self, host: &str, argv: &[&str]) -> anyhow::Result<Output> {
        let (prog, args) = argv.split_first().context("empty command")?;
        self.command(host, prog)
            .args(args)
            .output()
            .with_context(|| format!("running {argv:?} in {host}"))
    }

    /// Runs a command in `host` and fails with its stderr if it fails.
    pub fn exec_ok(&self, host: &str, argv: &[&str]) -> anyhow::Result<String> {
        let out = self.exec(host, argv)?;
        if !out.status.success() {
            bail!(
                "{argv:?} in {host} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a long-running process in `host`, its stdout and stderr going to
    /// `log` (or inherited); it is killed on drop.
    pub fn spawn(
        &mut self,
        host: &str,
        cmd: Command,
        log: Option<&std::path::Path>,
    ) -> anyhow::Result<usize> {
        let mut c = self.command(host, cmd.get_program());
        c.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdin(Stdio::null());
        if let Some(path) = log {
            let f = std::fs::File::create(path)
                .with_context(|| format!("creating log {}", path.display()))?;
            c.stdout(f.try_clone()?).stderr(f);
        }
        let child = c.spawn().context("spawning a process in a namespace")?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    pub fn child_mut(&mut self, idx: usize) -> &mut Child {
        &mut self.children[idx]
    }

    /// Whether `iface` in `host` has an XDP program attached, per `ip link`.
    pub fn xdp_attached(&self, host: &str, iface: &str) -> anyhow::Result<bool> {
        let out = self.exec_ok(host, &["ip", "-d", "link", "show", "dev", iface])?;
        Ok(out.contains("prog/xdp") || out.contains(" xdp"))
    }
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if f()? {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(netns_sh())
            .args(["destroy", &self.prefix])
            .status();
    }
}
