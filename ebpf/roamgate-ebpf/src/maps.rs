//! The maps, pinned by name (`PinningType::ByName`): the loader pins them
//! under /sys/fs/bpf/roamgate, and a restarted control plane finds them again.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use roamgate_common::{
    counters,
    maps::{
        binding_filter_slot, BindingKey, BindingValue, TunnelKey, TunnelValue, VoiceFlowKey,
        VoiceFlowValue, VoicePortKey, BINDINGS_MAX, BINDING_FILTER_SLOTS, BPF_F_NO_PREALLOC,
        INSIDE_IFS_MAX, TUNNELS_MAX, VOICE_FLOWS_MAX, VOICE_PORTS_MAX, VOICE_PORT_BITS_WORDS,
    },
};

#[map(name = "RG_COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(counters::MAX_COUNTERS, 0);

#[map(name = "RG_BINDINGS")]
static BINDINGS: HashMap<BindingKey, BindingValue> =
    HashMap::pinned(BINDINGS_MAX, BPF_F_NO_PREALLOC);

#[map(name = "RG_BIND_FILTER")]
static BINDING_FILTER: Array<u32> = Array::pinned(BINDING_FILTER_SLOTS, 0);

/// The binding of `key`, looked up only when its filter slot is marked: an
/// inlined array load instead of a hash lookup for traffic that is not
/// roamgate's.
#[inline(always)]
pub fn binding(key: BindingKey) -> Option<*const BindingValue> {
    match BINDING_FILTER.get(binding_filter_slot(&key)) {
        Some(mark) if *mark != 0 => BINDINGS.get_ptr(key),
        _ => None,
    }
}

#[map(name = "RG_INSIDE_IFS")]
static INSIDE_IFS: HashMap<u32, u32> = HashMap::pinned(INSIDE_IFS_MAX, 0);

/// Whether `ifindex` is marked as the node's inside (see
/// `roamgate_common::maps::INSIDE_IFS`).
#[inline(always)]
pub fn is_inside(ifindex: u32) -> bool {
    INSIDE_IFS.get_ptr(ifindex).is_some()
}

#[map(name = "RG_TUNNELS")]
pub static TUNNELS: HashMap<TunnelKey, TunnelValue> =
    HashMap::pinned(TUNNELS_MAX, BPF_F_NO_PREALLOC);

#[map(name = "RG_VOICE_PORTS")]
pub static VOICE_PORTS: HashMap<VoicePortKey, u32> = HashMap::pinned(VOICE_PORTS_MAX, 0);

#[map(name = "RG_VOICE_BITS")]
pub static VOICE_PORT_BITS: Array<u64> = Array::pinned(VOICE_PORT_BITS_WORDS, 0);

#[map(name = "RG_VOICE_FLOWS")]
pub static VOICE_FLOWS: HashMap<VoiceFlowKey, VoiceFlowValue> = HashMap::pinned(VOICE_FLOWS_MAX, 0);

/// Adds `n` to counter `idx` on this CPU.
#[inline(always)]
pub fn count(idx: u32, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *slot += n };
    }
}

/// `bpf_ktime_get_boot_ns` once per jiffy and CPU: (jiffies, boot ns).
#[repr(C)]
pub struct ClockCache {
    jiffies: u64,
    boot_ns: u64,
}

/// Per-CPU clock cache; internal, not pinned.
#[map(name = "RG_CLOCK")]
static CLOCK: PerCpuArray<ClockCache> = PerCpuArray::with_max_entries(1, 0);

/// `CLOCK_BOOTTIME` now, the clock expiries are written in, to within one
/// jiffy: reading the clock source costs tens of ns per packet, so the
/// value is cached per CPU and refreshed when `jiffies` moves. An expiry
/// therefore takes effect up to one jiffy (1-10 ms) late.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without arguments, available to XDP since 5.5.
    let j = unsafe { aya_ebpf::helpers::bpf_jiffies64() };
    match CLOCK.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; nothing else writes it while we run.
        Some(c) => unsafe {
            if (*c).jiffies != j || (*c).boot_ns == 0 {
                (*c).jiffies = j;
                (*c).boot_ns = aya_ebpf::helpers::bpf_ktime_get_boot_ns();
            }
            (*c).boot_ns
        },
        // SAFETY: helper without arguments, available to XDP since 5.8.
        None => unsafe { aya_ebpf::helpers::bpf_ktime_get_boot_ns() },
    }
}
