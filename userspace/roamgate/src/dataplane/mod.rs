//! Loading, attaching and observing the XDP data plane.
//!
//! The object built from `ebpf/roamgate-ebpf` is embedded in the binary. Maps
//! are pinned by name under a pin directory (by default
//! [`roamgate_common::maps::PIN_DIR`]) so that the state outlives the control
//! plane: a restarted gateway reuses the pinned maps.

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
    #[error("attaching XDP to {iface} in {mode} mode: {source} (does the interface exist and does its driver support this mode? try xdp_mode = \"skb\")")]
    Attach {
        iface: String,
        mode: &'static str,
        #[source]
        source: aya::programs::ProgramError,
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

/// How XDP is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// In the driver (fast path). Fails where the driver has no XDP support.
    Native,
    /// Generic XDP in the stack: works everywhere, slower.
    Skb,
}

impl AttachMode {
    fn aya(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        }
    }
}

/// A loaded data plane. Dropping it detaches every XDP link it made; the
/// pinned maps stay.
pub struct DataPlane {
    ebpf: Ebpf,
    links: Vec<(String, XdpLinkId)>,
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

    /// Attaches the XDP program to `iface`.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<(), DataPlaneError> {
        let link = self
            .xdp_mut()?
            .attach(iface, mode.aya())
            .map_err(|source| DataPlaneError::Attach {
                iface: iface.to_owned(),
                mode: mode.as_str(),
                source,
            })?;
        self.links.push((iface.to_owned(), link));
        Ok(())
    }

    /// Detaches from every interface this data plane attached to.
    pub fn detach_all(&mut self) -> Vec<(String, Result<(), DataPlaneError>)> {
        let links = std::mem::take(&mut self.links);
        let mut out = Vec::new();
        for (iface, link) in links {
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

    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.links.iter().map(|(i, _)| i.as_str())
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
