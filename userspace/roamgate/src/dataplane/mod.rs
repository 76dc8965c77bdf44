//! Loading, attaching and observing the XDP data plane.
//!
//! The object built from `ebpf/roamgate-ebpf` is embedded in the binary. Maps
//! are pinned by name under a pin directory (by default
//! [`roamgate_common::maps::PIN_DIR`]) so that the state outlives the control
//! plane: a restarted gateway reuses the pinned maps.

pub mod driver;
pub mod maps;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::{
    maps::PerCpuArray,
    programs::{xdp::XdpLinkId, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use roamgate_common::counters;
use tracing::warn;

/// The eBPF object, built by `build.rs` with Debian's rustc and bpf-linker.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("ROAMGATE_EBPF_OBJ"));

/// Name of the XDP entry point in the object.
pub const XDP_PROGRAM: &str = "roamgate";

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("bpffs pin directory {path}: {source} (bpffs must be mounted at /sys/fs/bpf: `cargo xtask setup` mounts it)")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the eBPF object: {0} (are you root, and is the kernel ≥ 6.1 with BTF?)")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no program {0:?}")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map {0:?}")]
    MissingMap(&'static str),
    #[error("the verifier or kernel refused program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("attaching XDP to {iface} (driver {driver}) in {mode} mode: {source} (does the interface exist and does its driver support this mode? set xdp_mode = \"auto\" to fall back to generic XDP, or \"skb\")")]
    Attach {
        iface: String,
        driver: String,
        mode: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("marking the pinned bindings in the binding filter: {0}")]
    MarkBindings(#[source] maps::MapsError),
    #[error("reading map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// How XDP is attached to an interface (the `xdp_mode` setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native where the driver supports it, otherwise generic (skb) with
    /// one warning: comes up on any interface.
    #[default]
    Auto,
    /// In the driver (fast path). Fails where the driver has no XDP support.
    Native,
    /// Generic XDP in the stack: works everywhere, slower.
    Skb,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Auto => "auto",
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        }
    }
}

/// The mode an attach actually used (never "auto").
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    Native,
    Skb,
}

/// Interfaces with the XDP mode each one got.
pub type AttachedLinks = Vec<(String, AttachedMode)>;

impl AttachedMode {
    fn aya(self) -> XdpMode {
        match self {
            AttachedMode::Native => XdpMode::Driver,
            AttachedMode::Skb => XdpMode::Skb,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Skb => "skb",
        }
    }
}

/// The errno of an attach error that means "this driver has no native
/// XDP": the kernel answers EOPNOTSUPP (no `ndo_bpf`) from
/// `bpf_link_create`, or EINVAL through aya's netlink fallback on older
/// kernels.
fn native_unsupported(e: &aya::programs::ProgramError) -> Option<std::io::Error> {
    use aya::programs::{xdp::XdpError, ProgramError};
    let errno = match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::XdpError(XdpError::NetlinkError(n)) => n.raw_os_error(),
        _ => None,
    }?;
    matches!(errno, libc::EOPNOTSUPP | libc::EINVAL)
        .then(|| std::io::Error::from_raw_os_error(errno))
}

/// Attaches `xdp` to `iface` in `mode`. With [`AttachMode::Auto`], a driver
/// without native XDP gets generic XDP and one warning naming the driver.
pub fn attach_xdp(
    xdp: &mut Xdp,
    iface: &str,
    mode: AttachMode,
) -> Result<(XdpLinkId, AttachedMode), DataPlaneError> {
    let attach = |xdp: &mut Xdp, m: AttachedMode| {
        xdp.attach(iface, m.aya())
            .map(|id| (id, m))
            .map_err(|source| DataPlaneError::Attach {
                iface: iface.to_owned(),
                driver: driver::driver_name(iface),
                mode: m.as_str(),
                source: Box::new(source),
            })
    };
    match mode {
        AttachMode::Native => attach(xdp, AttachedMode::Native),
        AttachMode::Skb => attach(xdp, AttachedMode::Skb),
        AttachMode::Auto => match xdp.attach(iface, XdpMode::Driver) {
            Ok(id) => Ok((id, AttachedMode::Native)),
            Err(e) => match native_unsupported(&e) {
                Some(errno) => {
                    let attached = attach(xdp, AttachedMode::Skb)?;
                    warn!(
                        interface = %iface,
                        driver = %driver::driver_name(iface),
                        reason = %format!("{e}: {errno}"),
                        "no native XDP in this driver: attached in generic (skb) mode. Native \
                         mode would forward in the driver before any skb is allocated, at \
                         several times the packet rate; use a NIC whose driver has XDP \
                         (virtio_net with enough queues, mlx5, ixgbe, i40e, veth...) for full speed"
                    );
                    Ok(attached)
                }
                None => Err(DataPlaneError::Attach {
                    iface: iface.to_owned(),
                    driver: driver::driver_name(iface),
                    mode: AttachedMode::Native.as_str(),
                    source: Box::new(e),
                }),
            },
        },
    }
}

/// A loaded data plane. Dropping it detaches every XDP link it made; the
/// pinned maps stay.
pub struct DataPlane {
    ebpf: Ebpf,
    links: Vec<(String, XdpLinkId, AttachedMode)>,
    pin_dir: PathBuf,
}

impl DataPlane {
    /// Loads the embedded object, pinning (or reusing) its maps under `pin_dir`,
    /// and loads the XDP program into the kernel.
    pub fn load(pin_dir: &Path) -> Result<Self, DataPlaneError> {
        Self::load_object(EBPF_OBJECT, pin_dir)
    }

    /// As [`DataPlane::load`], for another object (tests, benchmarks).
    pub fn load_object(object: &[u8], pin_dir: &Path) -> Result<Self, DataPlaneError> {
        crate::platform::fs::private_dir(pin_dir).map_err(|source| DataPlaneError::PinDir {
            path: pin_dir.to_owned(),
            source,
        })?;
        let ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(object)
            .map_err(DataPlaneError::Load)?;
        let mut dp = Self {
            ebpf,
            links: Vec::new(),
            pin_dir: pin_dir.to_owned(),
        };
        dp.xdp_mut()?
            .load()
            .map_err(|source| DataPlaneError::Program {
                program: XDP_PROGRAM,
                source,
            })?;
        // Bindings pinned by an earlier run (or an earlier version) need
        // their filter marks before the program is attached.
        maps::Maps::open(pin_dir)
            .and_then(|mut m| m.mark_bindings())
            .map_err(DataPlaneError::MarkBindings)?;
        Ok(dp)
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn xdp(&self) -> Result<&Xdp, DataPlaneError> {
        self.ebpf
            .program(XDP_PROGRAM)
            .and_then(|p| p.try_into().ok())
            .ok_or(DataPlaneError::MissingProgram(XDP_PROGRAM))
    }

    pub fn xdp_mut(&mut self) -> Result<&mut Xdp, DataPlaneError> {
        self.ebpf
            .program_mut(XDP_PROGRAM)
            .and_then(|p| p.try_into().ok())
            .ok_or(DataPlaneError::MissingProgram(XDP_PROGRAM))
    }

    /// Attaches the XDP program to `iface` and returns the mode in use
    /// (see [`attach_xdp`] for `auto`).
    pub fn attach(
        &mut self,
        iface: &str,
        mode: AttachMode,
    ) -> Result<AttachedMode, DataPlaneError> {
        let (link, used) = attach_xdp(self.xdp_mut()?, iface, mode)?;
        self.links.push((iface.to_owned(), link, used));
        Ok(used)
    }

    /// Detaches from every interface this data plane attached to.
    pub fn detach_all(&mut self) -> Vec<(String, Result<(), DataPlaneError>)> {
        let links = std::mem::take(&mut self.links);
        let mut out = Vec::new();
        for (iface, link, _) in links {
            let res = match self.xdp_mut() {
                Ok(xdp) => xdp.detach(link).map_err(|source| DataPlaneError::Program {
                    program: XDP_PROGRAM,
                    source,
                }),
                Err(e) => Err(e),
            };
            out.push((iface, res));
        }
        out
    }

    /// The interfaces attached, with the mode each one uses.
    pub fn attached(&self) -> impl Iterator<Item = (&str, AttachedMode)> {
        self.links.iter().map(|(i, _, m)| (i.as_str(), *m))
    }

    /// Reads every counter, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, DataPlaneError> {
        let map = self
            .ebpf
            .map(maps::COUNTERS)
            .ok_or(DataPlaneError::MissingMap(maps::COUNTERS))?;
        let array: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|source| DataPlaneError::Map {
                map: maps::COUNTERS,
                source,
            })?;
        let mut values = BTreeMap::new();
        for &(idx, name) in counters::NAMES {
            let per_cpu = array.get(&idx, 0).map_err(|source| DataPlaneError::Map {
                map: maps::COUNTERS,
                source,
            })?;
            values.insert(name, per_cpu.iter().sum());
        }
        Ok(Counters(values))
    }
}

/// A snapshot of the data-plane counters, by operator-facing name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<&'static str, u64>);

impl Counters {
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// The counter with the given index in [`roamgate_common::counters`].
    pub fn by_index(&self, idx: u32) -> u64 {
        counters::NAMES
            .iter()
            .find(|(i, _)| *i == idx)
            .map(|(_, n)| self.get(n))
            .unwrap_or(0)
    }

    /// `self - earlier`, per counter (saturating).
    pub fn delta(&self, earlier: &Counters) -> Counters {
        Counters(
            self.0
                .iter()
                .map(|(k, v)| (*k, v.saturating_sub(earlier.get(k))))
                .collect(),
        )
    }
}
