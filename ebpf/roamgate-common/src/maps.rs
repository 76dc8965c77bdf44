//! Names and value types of the maps shared between the XDP programs and
//! userspace. Maps are pinned by name under [`PIN_DIR`], so a control-plane
//! restart finds them again and forwarding never stops.

/// Where the control plane pins every roamgate map.
pub const PIN_DIR: &str = "/sys/fs/bpf/roamgate";

/// Per-CPU array of `u64`, indexed by [`crate::counters`].
pub const COUNTERS: &str = "RG_COUNTERS";
