//! The tunnel topology shared by the data-plane namespace tests and the
//! benchmark:
//!
//! ```text
//!  cn ──────────── ha ─────────── tr ─────────── coa ──────────── app
//! 10.1.0.2   10.1.0.1  192.0.2.1  192.0.2.2        10.2.0.1   10.2.0.2
//!  cn0          ha-cn     ha-tr      tr-ha          coa-app      app0
//!                           198.51.100.1  198.51.100.2          + home 10.10.0.2/32
//!                             tr-coa        coa-tr
//! ```
//!
//! `ha` is the home agent gateway, `coa` the care-of gateway, `tr` a plain
//! Linux router on the transit path (where captures and injections happen:
//! frames that XDP redirects never pass the stack's taps on the gateways
//! themselves), `app` the application host holding the home address, and
//! `cn` the correspondent. Each gateway end is either the XDP data plane
//! (loaded in this process, maps pinned under a per-test directory) or the
//! userspace forwarder (`roamgate tunnel` started in the namespace).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context as _};
use roamgate::dataplane::{
    maps::{Binding, Expiry, Maps, Role, TunnelSpec},
    AttachMode, Counters, DataPlane,
};
use roamgate_mip::MasterKey;

use crate::netns::{in_netns, roamgate_bin, Topology};

pub const SPI: u32 = 0x0000_1001;
pub use crate::netns::{CN, HA_CN, HA_TR, TR_HA};
pub const TR_COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const COA_TR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const COA_APP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const APP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
pub const HOME: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
/// Outer (transit) MTU.
pub const OUTER_MTU: u16 = 1500;
/// Inner MTU on the correspondent and application links: the outer MTU
/// minus the 60 bytes of tunnel overhead.
pub const INNER_MTU: u16 = OUTER_MTU - 60;
/// The master key of the test tunnel.
pub const MASTER: [u8; 32] = [0x5a; 32];

/// Which data plane runs at one tunnel end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Xdp,
    Tun,
}

pub struct TunnelNet {
    pub topo: Topology,
    pub ha: Option<DataPlane>,
    pub coa: Option<DataPlane>,
    pub pin_ha: PathBuf,
    pub pin_coa: PathBuf,
    pub dir: tempfile::TempDir,
    tun_children: Vec<(String, usize)>,
}

impl TunnelNet {
    /// Builds the topology, starts the chosen data plane at each end and
    /// installs the tunnel.
    pub fn new(tag: &str, ha: End, coa: End) -> anyhow::Result<Self> {
        Self::with_veth_queues(tag, ha, coa, 1)
    }

    /// [`TunnelNet::new`] with `queues` RX and TX queues on every veth (the
    /// bench's two-core runs).
    pub fn with_veth_queues(tag: &str, ha: End, coa: End, queues: u32) -> anyhow::Result<Self> {
        let mut topo = Topology::new(tag)?;
        topo.set_veth_queues(queues);
        topo.home_side()?;
        for h in ["coa", "app"] {
            topo.add_host(h)?;
        }
        topo.uplinks(&[("tr-coa", "coa", "coa-tr")])?;
        topo.link(
            ("coa", "coa-app", "10.2.0.1/24"),
            ("app", "app0", "10.2.0.2/24"),
        )?;
        for h in ["ha", "tr", "coa"] {
            topo.forward(h)?;
        }
        topo.no_rp_filter(&["cn", "ha", "tr", "coa", "app"])?;
        topo.set_mtu(
            &[
                ("cn", "cn0"),
                ("ha", "ha-cn"),
                ("coa", "coa-app"),
                ("app", "app0"),
            ],
            INNER_MTU,
        )?;
        // Receivers of XDP-redirected frames without an XDP program of
        // their own need GRO (veth NAPI) to take them.
        topo.tune_for_xdp(&[
            ("tr", "tr-ha"),
            ("tr", "tr-coa"),
            ("cn", "cn0"),
            ("app", "app0"),
        ])?;
        topo.route("cn", "10.10.0.0/16", "10.1.0.1")?;
        topo.route("ha", "198.51.100.0/24", "192.0.2.2")?;
        topo.route("coa", "192.0.2.0/24", "198.51.100.1")?;
        topo.hold_address("app", "app0", HOME, COA_APP)?;
        topo.route("coa", "10.10.0.2/32", "10.2.0.2")?;
        if ha == End::Xdp {
            // The stack's own route to the home network, used only for the
            // first packets whose neighbours XDP has to leave to the stack.
            topo.route("ha", "10.10.0.0/16", "192.0.2.2")?;
        }
        let mut net = Self {
            pin_ha: PathBuf::from(format!("/sys/fs/bpf/{}ha", topo.prefix())),
            pin_coa: PathBuf::from(format!("/sys/fs/bpf/{}coa", topo.prefix())),
            topo,
            ha: None,
            coa: None,
            dir: tempfile::tempdir()?,
            tun_children: Vec::new(),
        };
        net.warm_neighbours()?;
        let key = write_master_key(net.dir.path())?;
        match ha {
            End::Xdp => net.ha = Some(net.xdp_end("ha", Role::HomeAgent)?),
            End::Tun => net.tun_end("ha", Role::HomeAgent, &key)?,
        }
        match coa {
            End::Xdp => net.coa = Some(net.xdp_end("coa", Role::CareOf)?),
            End::Tun => net.tun_end("coa", Role::CareOf, &key)?,
        }
        Ok(net)
    }

    /// Pings each link from both sides so every neighbour is resolved
    /// before XDP needs it.
    fn warm_neighbours(&self) -> anyhow::Result<()> {
        self.topo.warm_neighbours(&[
            ("cn", HA_CN),
            ("ha", CN),
            ("ha", TR_HA),
            ("tr", HA_TR),
            ("tr", COA_TR),
            ("coa", TR_COA),
            ("coa", APP),
            ("app", COA_APP),
        ])
    }

    fn xdp_end(&mut self, host: &str, role: Role) -> anyhow::Result<DataPlane> {
        let (pin, ifs, local, remote) = match role {
            Role::HomeAgent => (&self.pin_ha, ["ha-cn", "ha-tr"], HA_TR, COA_TR),
            Role::CareOf => (&self.pin_coa, ["coa-tr", "coa-app"], COA_TR, HA_TR),
        };
        let _ = std::fs::remove_dir_all(pin);
        let mut dp = DataPlane::load(pin).with_context(|| format!("loading XDP for {host}"))?;
        let ns = self.topo.ns(host);
        let app_ifindex = in_netns(&ns, || {
            for i in ifs {
                dp.attach(i, AttachMode::Native)
                    .with_context(|| format!("attaching to {i}"))?;
            }
            match role {
                Role::CareOf => ifindex("coa-app").map(Some),
                Role::HomeAgent => Ok(None),
            }
        })?;
        let mut maps = Maps::open(pin)?;
        if let Some(i) = app_ifindex {
            // The application host's side: the only place the care-of end
            // takes the home address's packets from (not the uplink coa-tr).
            maps.mark_inside(i)?;
        }
        let mut spec = TunnelSpec::new(SPI, role, local, HOME, &MasterKey::new(MASTER));
        spec.mtu = OUTER_MTU;
        maps.install(
            &Binding {
                home: HOME,
                role,
                remote,
                spi: SPI,
                expires: Expiry::Never,
            },
            &spec,
        )?;
        Ok(dp)
    }

    fn tun_end(&mut self, host: &str, role: Role, key: &Path) -> anyhow::Result<()> {
        let (local, remote, route) = match role {
            Role::HomeAgent => (HA_TR, COA_TR, "10.10.0.2/32"),
            Role::CareOf => (COA_TR, HA_TR, "10.1.0.0/24"),
        };
        let role_s = match role {
            Role::HomeAgent => "home-agent",
            Role::CareOf => "care-of",
        };
        let stats = self.tun_stats_path(host);
        let cfg = self.dir.path().join(format!("tunnel-{host}.toml"));
        // Each end keeps its sequence state in the test's directory, so a
        // restart (`restart_tun`) finds it again.
        let state = self.dir.path().join(format!("tunnel-{host}.state"));
        std::fs::write(
            &cfg,
            format!(
                "[tunnel]\nrole = \"{role_s}\"\nspi = {SPI}\nlocal = \"{local}\"\nremote = \"{remote}\"\n\
                 home = \"{HOME}\"\nmaster_key_file = \"{}\"\ntun_name = \"rgtun0\"\nmtu = {OUTER_MTU}\n\
                 routes = [\"{route}\"]\nstats_file = \"{}\"\nstats_interval_ms = 100\n\
                 state_file = \"{}\"\n\
                 [log]\nlevel = \"info\"\n",
                key.display(),
                stats.display(),
                state.display()
            ),
        )?;
        self.start_tun(host)
    }

    /// Starts `roamgate tunnel` in `host` with the config `tun_end` wrote
    /// and waits for its first stats file.
    fn start_tun(&mut self, host: &str) -> anyhow::Result<()> {
        let stats = self.tun_stats_path(host);
        let cfg = self.dir.path().join(format!("tunnel-{host}.toml"));
        let mut cmd = Command::new(roamgate_bin()?);
        cmd.arg("tunnel").arg("--config").arg(&cfg);
        let log = self.dir.path().join(format!("tunnel-{host}.log"));
        let idx = self.topo.spawn(host, cmd, Some(&log))?;
        self.tun_children.push((host.to_owned(), idx));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !stats.exists() {
            if let Some(st) = self.topo.child_mut(idx).try_wait()? {
                bail!(
                    "roamgate tunnel in {host} exited ({st}): {}",
                    self.tun_log(host)
                );
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "roamgate tunnel in {host} did not start: {}",
                    self.tun_log(host)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the userspace forwarder in `host` (SIGTERM, as a service
    /// manager would) and starts it again with the same config and state
    /// file. Its previous log is kept as `tunnel-HOST.log.N`.
    pub fn restart_tun(&mut self, host: &str) -> anyhow::Result<()> {
        let pos = self
            .tun_children
            .iter()
            .position(|(h, _)| h == host)
            .with_context(|| format!("{host} runs no userspace forwarder"))?;
        let (_, idx) = self.tun_children.remove(pos);
        stop_child(self.topo.child_mut(idx));
        let log = self.dir.path().join(format!("tunnel-{host}.log"));
        let n = (1..).find(|n| !log.with_extension(format!("log.{n}")).exists());
        let _ = std::fs::rename(&log, log.with_extension(format!("log.{}", n.unwrap_or(1))));
        std::fs::remove_file(self.tun_stats_path(host))?;
        self.start_tun(host)
    }

    pub fn tun_stats_path(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("tunnel-{host}.json"))
    }

    /// The forwarder's counters in `host` (written every 100 ms).
    pub fn tun_stats(&self, host: &str) -> anyhow::Result<serde_json::Value> {
        std::thread::sleep(Duration::from_millis(250));
        let text = std::fs::read_to_string(self.tun_stats_path(host))?;
        Ok(serde_json::from_str(&text)?)
    }

    pub fn tun_log(&self, host: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("tunnel-{host}.log")))
            .unwrap_or_default()
    }

    pub fn counters(&self, host: &str) -> anyhow::Result<Counters> {
        let dp = match host {
            "ha" => self.ha.as_ref(),
            "coa" => self.coa.as_ref(),
            _ => None,
        }
        .with_context(|| format!("{host} has no XDP data plane"))?;
        Ok(dp.counters()?)
    }

    /// The MAC address of `iface` in `host` (from `ip -j`: /sys is the
    /// host's view under `nsenter --net`).
    pub fn mac(&self, host: &str, iface: &str) -> anyhow::Result<[u8; 6]> {
        let j = self
            .topo
            .exec_ok(host, &["ip", "-j", "link", "show", "dev", iface])?;
        let v: serde_json::Value = serde_json::from_str(&j)?;
        parse_mac(
            v[0]["address"]
                .as_str()
                .context("no address in ip -j link")?,
        )
    }
}

/// The ifindex of `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a valid NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        bail!("no interface {name}: {}", std::io::Error::last_os_error());
    }
    Ok(i)
}

/// Writes [`MASTER`] as a 0600 hex key file in `dir`; returns its path.
pub fn write_master_key(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let key = dir.join("tunnel.key");
    let hex: String = MASTER.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&key, hex)?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    Ok(key)
}

pub fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let mut out = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("not a MAC address: {s:?}");
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).with_context(|| format!("not a MAC address: {s:?}"))?;
    }
    Ok(out)
}

impl Drop for TunnelNet {
    fn drop(&mut self) {
        // Detach XDP and stop forwarders before the namespaces go.
        if let Some(mut dp) = self.ha.take() {
            let _ = dp.detach_all();
        }
        if let Some(mut dp) = self.coa.take() {
            let _ = dp.detach_all();
        }
        for (_, idx) in &self.tun_children {
            stop_child(self.topo.child_mut(*idx));
        }
        let _ = std::fs::remove_dir_all(&self.pin_ha);
        let _ = std::fs::remove_dir_all(&self.pin_coa);
    }
}

/// SIGTERM to a forwarder child, then up to 2 s for it to exit.
fn stop_child(c: &mut std::process::Child) {
    if matches!(c.try_wait(), Ok(Some(_))) {
        return;
    }
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped
    // yet.
    unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
    for _ in 0..40 {
        if matches!(c.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The frames of a classic pcap file (as `tshark -F pcap` writes it).
pub fn read_pcap(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if data.len() < 24 {
        bail!("{} is not a pcap file", path.display());
    }
    let le = match data[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => bail!("{} is not a classic pcap file", path.display()),
    };
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let incl = u32_at(&data[off + 8..off + 12]) as usize;
        off += 16;
        let Some(f) = data.get(off..off + incl) else {
            break;
        };
        frames.push(f.to_vec());
        off += incl;
    }
    Ok(frames)
}
