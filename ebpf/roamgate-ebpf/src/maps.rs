//! The maps, pinned by name (`PinningType::ByName`): the loader pins them
//! under /sys/fs/bpf/roamgate, and a restarted control plane finds them again.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use roamgate_common::{
    counters,
    maps::{
        BindingKey, BindingValue, TunnelKey, TunnelValue, VoiceFlowKey, VoiceFlowValue,
        VoicePortKey, BINDINGS_MAX, BPF_F_NO_PREALLOC, TUNNELS_MAX, VOICE_FLOWS_MAX,
        VOICE_PORTS_MAX,
    },
};

#[map(name = "RG_COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(counters::MAX_COUNTERS, 0);

#[map(name = "RG_BINDINGS")]
pub static BINDINGS: HashMap<BindingKey, BindingValue> =
    HashMap::pinned(BINDINGS_MAX, BPF_F_NO_PREALLOC);

#[map(name = "RG_TUNNELS")]
pub static TUNNELS: HashMap<TunnelKey, TunnelValue> =
    HashMap::pinned(TUNNELS_MAX, BPF_F_NO_PREALLOC);

#[map(name = "RG_VOICE_PORTS")]
pub static VOICE_PORTS: HashMap<VoicePortKey, u32> = HashMap::pinned(VOICE_PORTS_MAX, 0);

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

/// `CLOCK_BOOTTIME` now, the clock expiries are written in.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without arguments, available to XDP since 5.8.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_boot_ns() }
}
