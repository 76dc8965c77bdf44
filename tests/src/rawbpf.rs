//! Tiny XDP programs assembled at run time, for benchmark baselines and
//! sinks: a constant-action program (XDP_PASS / XDP_DROP baselines), and
//! "restoring sinks" that a veth peer runs on frames redirected to it.
//!
//! Why sinks restore: in the live-frames mode of BPF_PROG_TEST_RUN the
//! kernel recycles each page without rewriting its content (only the data
//! pointers are reset; Documentation/bpf/bpf_prog_run.rst). A program that
//! rewrites the frame (encapsulation, decapsulation) would see its own
//! output on the next use of the page. The sink on the receiving veth puts
//! the original frame back into the page before it drops it, so every run of
//! the program under test starts from the intended input. For decapsulation
//! the sink also writes the next sequence number and its precomputed tag, so
//! the replay window sees fresh packets.
//!
//! Everything here is raw `bpf(2)`; the programs are a few dozen
//! instructions, built from the frame bytes.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
};

use anyhow::{bail, Context as _};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_XDP: u32 = 37;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

pub const XDP_DROP: i32 = 1;
pub const XDP_PASS: i32 = 2;

const HELPER_MAP_LOOKUP: i32 = 1;
const HELPER_XDP_ADJUST_HEAD: i32 = 44;
const HELPER_XDP_ADJUST_TAIL: i32 = 65;
const HELPER_REDIRECT: i32 = 23;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: `attr` is a zero-initialised 128-byte buffer laid out as the
    // kernel's `union bpf_attr` prefix for `cmd`; the kernel reads at most
    // the size we pass.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put_u32(a: &mut [u8], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(a: &mut [u8], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// One eBPF instruction.
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0xf);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// A tiny assembler with forward jumps to one "drop" label.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    to_drop: Vec<usize>,
}

impl Asm {
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.insns.push(i(0xb7, dst, 0, 0, imm));
    }
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.insns.push(i(0xbf, dst, src, 0, 0));
    }
    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.insns.push(i(0x07, dst, 0, 0, imm));
    }
    fn ldx_w(&mut self, dst: u8, src: u8, off: i16) {
        self.insns.push(i(0x61, dst, src, off, 0));
    }
    fn ldx_dw(&mut self, dst: u8, src: u8, off: i16) {
        self.insns.push(i(0x79, dst, src, off, 0));
    }
    fn stx_w(&mut self, dst: u8, src: u8, off: i16) {
        self.insns.push(i(0x63, dst, src, off, 0));
    }
    fn stx_dw(&mut self, dst: u8, src: u8, off: i16) {
        self.insns.push(i(0x7b, dst, src, off, 0));
    }
    fn st_w(&mut self, dst: u8, off: i16, imm: i32) {
        self.insns.push(i(0x62, dst, 0, off, imm));
    }
    fn st_b(&mut self, dst: u8, off: i16, imm: i32) {
        self.insns.push(i(0x72, dst, 0, off, imm));
    }
    fn ld_imm64(&mut self, dst: u8, v: u64) {
        self.insns.push(i(0x18, dst, 0, 0, v as u32 as i32));
        self.insns.push(i(0, 0, 0, 0, (v >> 32) as u32 as i32));
    }
    fn add_reg(&mut self, dst: u8, src: u8) {
        self.insns.push(i(0x0f, dst, src, 0, 0));
    }
    fn xor_reg(&mut self, dst: u8, src: u8) {
        self.insns.push(i(0xaf, dst, src, 0, 0));
    }
    fn xor_imm(&mut self, dst: u8, imm: i32) {
        self.insns.push(i(0xa7, dst, 0, 0, imm));
    }
    fn or_reg(&mut self, dst: u8, src: u8) {
        self.insns.push(i(0x4f, dst, src, 0, 0));
    }
    /// `dst = rotl(dst, n)` through `tmp`: eBPF has no rotate.
    fn rotl(&mut self, dst: u8, n: i32, tmp: u8) {
        self.mov_reg(tmp, dst);
        self.insns.push(i(0x77, tmp, 0, 0, 64 - n)); // tmp >>= 64 - n
        self.insns.push(i(0x67, dst, 0, 0, n)); // dst <<= n
        self.or_reg(dst, tmp);
    }
    /// One SipRound on v0..v3 = r4..r7, scratch r9.
    fn sipround(&mut self) {
        let (v0, v1, v2, v3, t) = (4, 5, 6, 7, 9);
        self.add_reg(v0, v1);
        self.rotl(v1, 13, t);
        self.xor_reg(v1, v0);
        self.rotl(v0, 32, t);
        self.add_reg(v2, v3);
        self.rotl(v3, 16, t);
        self.xor_reg(v3, v2);
        self.add_reg(v0, v3);
        self.rotl(v3, 21, t);
        self.xor_reg(v3, v0);
        self.add_reg(v2, v1);
        self.rotl(v1, 17, t);
        self.xor_reg(v1, v2);
        self.rotl(v2, 32, t);
    }
    /// Absorbs r8 (c = 2).
    fn sip_compress(&mut self) {
        self.xor_reg(7, 8);
        self.sipround();
        self.sipround();
        self.xor_reg(4, 8);
    }
    fn be64(&mut self, dst: u8) {
        self.insns.push(i(0xdc, dst, 0, 0, 64));
    }
    fn call(&mut self, helper: i32) {
        self.insns.push(i(0x85, 0, 0, 0, helper));
    }
    fn ld_map_fd(&mut self, dst: u8, fd: RawFd) {
        self.insns.push(i(0x18, dst, 1, 0, fd));
        self.insns.push(i(0, 0, 0, 0, 0));
    }
    /// if dst > src goto drop
    fn jgt_reg_drop(&mut self, dst: u8, src: u8) {
        self.to_drop.push(self.insns.len());
        self.insns.push(i(0x2d, dst, src, 0, 0));
    }
    /// if dst != imm goto drop
    fn jne_imm_drop(&mut self, dst: u8, imm: i32) {
        self.to_drop.push(self.insns.len());
        self.insns.push(i(0x55, dst, 0, 0, imm));
    }
    /// if dst == imm goto drop
    fn jeq_imm_drop(&mut self, dst: u8, imm: i32) {
        self.to_drop.push(self.insns.len());
        self.insns.push(i(0x15, dst, 0, 0, imm));
    }
    /// if dst >= imm (unsigned) goto drop
    fn jge_imm_drop(&mut self, dst: u8, imm: i32) {
        self.to_drop.push(self.insns.len());
        self.insns.push(i(0x35, dst, 0, 0, imm));
    }
    /// Stores `bytes` at `r_base + off` with 4-byte and 1-byte immediates.
    fn store_bytes(&mut self, base: u8, off: usize, bytes: &[u8]) {
        let mut k = 0;
        while k + 4 <= bytes.len() {
            let v = i32::from_ne_bytes([bytes[k], bytes[k + 1], bytes[k + 2], bytes[k + 3]]);
            self.st_w(base, (off + k) as i16, v);
            k += 4;
        }
        while k < bytes.len() {
            self.st_b(base, (off + k) as i16, bytes[k] as i32);
            k += 1;
        }
    }
    /// `r7 = n = counter++` and `r9 = &tags[n]` (drops after the last tag);
    /// returns the two maps the program needs to keep alive.
    fn next_tag(&mut self, tags: &[[u8; 16]]) -> anyhow::Result<Vec<OwnedFd>> {
        let counter = array_map(8, 1)?;
        map_update(&counter, 0, &0u64.to_ne_bytes())?;
        let tag_map = array_map(16, tags.len() as u32)?;
        for (k, t) in tags.iter().enumerate() {
            map_update(&tag_map, k as u32, t)?;
        }
        self.st_w(10, -8, 0);
        self.ld_map_fd(1, counter.as_raw_fd());
        self.mov_reg(2, 10);
        self.add_imm(2, -8);
        self.call(HELPER_MAP_LOOKUP);
        self.jeq_imm_drop(0, 0);
        self.ldx_dw(7, 0, 0);
        self.mov_reg(8, 7);
        self.add_imm(8, 1);
        self.stx_dw(0, 8, 0);
        self.jge_imm_drop(7, tags.len() as i32);
        self.stx_w(10, 7, -8);
        self.ld_map_fd(1, tag_map.as_raw_fd());
        self.mov_reg(2, 10);
        self.add_imm(2, -8);
        self.call(HELPER_MAP_LOOKUP);
        self.jeq_imm_drop(0, 0);
        self.mov_reg(9, 0);
        Ok(vec![counter, tag_map])
    }

    /// Writes `frame` at `r2` with sequence number `first_seq + r7` at
    /// `seq_off` and the tag at `r9` at `tag_off` (after [`Self::next_tag`]).
    fn store_stamped(&mut self, frame: &[u8], seq_off: usize, tag_off: usize, first_seq: u64) {
        self.store_bytes(2, 0, &frame[..seq_off]);
        self.mov_reg(5, 7);
        self.add_imm(5, first_seq as i32);
        self.be64(5);
        self.stx_dw(2, 5, seq_off as i16);
        self.ldx_dw(5, 9, 0);
        self.stx_dw(2, 5, tag_off as i16);
        self.ldx_dw(5, 9, 8);
        self.stx_dw(2, 5, (tag_off + 8) as i16);
        self.store_bytes(2, tag_off + 16, &frame[tag_off + 16..]);
    }

    /// Places the drop label (r0 = XDP_DROP; exit) and resolves the jumps.
    fn finish(mut self) -> Vec<u8> {
        if self.to_drop.is_empty() {
            // No jump to it: the verifier refuses unreachable code.
            return self.insns.iter().flat_map(|x| x.bytes()).collect();
        }
        let label = self.insns.len();
        self.mov_imm(0, XDP_DROP);
        self.insns.push(i(0x95, 0, 0, 0, 0));
        for at in self.to_drop {
            self.insns[at].off = (label - at - 1) as i16;
        }
        self.insns.iter().flat_map(|x| x.bytes()).collect()
    }
}

/// A loaded program (its fd).
pub struct RawProg {
    fd: OwnedFd,
    _maps: Vec<OwnedFd>,
}

fn load(name: &str, code: &[u8], maps: Vec<OwnedFd>) -> anyhow::Result<RawProg> {
    let license = CString::new("GPL").unwrap();
    // Room for the verifier's log of a long straight-line program (the
    // SipHash probe): a full log buffer fails the load with ENOSPC.
    let mut log = vec![0u8; 1 << 20];
    let mut a = [0u8; 128];
    put_u32(&mut a, 0, BPF_PROG_TYPE_XDP);
    put_u32(&mut a, 4, (code.len() / 8) as u32);
    put_u64(&mut a, 8, code.as_ptr() as u64);
    put_u64(&mut a, 16, license.as_ptr() as u64);
    put_u32(&mut a, 24, 1); // log_level
    put_u32(&mut a, 28, log.len() as u32);
    put_u64(&mut a, 32, log.as_mut_ptr() as u64);
    let n = name.as_bytes();
    a[48..48 + n.len().min(15)].copy_from_slice(&n[..n.len().min(15)]);
    put_u32(&mut a, 68, BPF_XDP); // expected_attach_type
    match bpf(BPF_PROG_LOAD, &mut a) {
        // SAFETY: the kernel returned a new fd that we now own.
        Ok(fd) => Ok(RawProg {
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
            _maps: maps,
        }),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            bail!(
                "loading {name}: {e}\n{}",
                String::from_utf8_lossy(&log[..end])
            )
        }
    }
}

fn array_map(value_size: u32, entries: u32) -> anyhow::Result<OwnedFd> {
    map_create(BPF_MAP_TYPE_ARRAY, value_size, entries)
}

/// A map with 4-byte keys.
fn map_create(kind: u32, value_size: u32, entries: u32) -> anyhow::Result<OwnedFd> {
    let mut a = [0u8; 128];
    put_u32(&mut a, 0, kind);
    put_u32(&mut a, 4, 4);
    put_u32(&mut a, 8, value_size);
    put_u32(&mut a, 12, entries);
    let fd = bpf(BPF_MAP_CREATE, &mut a).context("BPF_MAP_CREATE")?;
    // SAFETY: a new fd from the kernel, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn map_update(map: &OwnedFd, key: u32, value: &[u8]) -> anyhow::Result<()> {
    let mut a = [0u8; 128];
    put_u32(&mut a, 0, map.as_raw_fd() as u32);
    put_u64(&mut a, 8, &key as *const u32 as u64);
    put_u64(&mut a, 16, value.as_ptr() as u64);
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).context("BPF_MAP_UPDATE_ELEM")?;
    Ok(())
}

/// `r0 = action; exit`.
pub fn constant(action: i32) -> anyhow::Result<RawProg> {
    let mut asm = Asm::default();
    asm.mov_imm(0, action);
    asm.insns.push(i(0x95, 0, 0, 0, 0));
    let code: Vec<u8> = asm.insns.iter().flat_map(|x| x.bytes()).collect();
    load(
        if action == XDP_DROP {
            "rg_drop"
        } else {
            "rg_pass"
        },
        &code,
        Vec::new(),
    )
}

/// `return bpf_redirect(ifindex, 0)`: the cost of the redirect alone, as
/// the baseline for the forwarding figures.
pub fn redirect(ifindex: u32) -> anyhow::Result<RawProg> {
    redirect_after_lookups(ifindex, 0)
}

/// [`redirect`] after `lookups` hits in a one-entry hash map (4-byte key,
/// 8-byte value): what one hash-map lookup, a helper call, costs a
/// forwarding program on this machine.
pub fn redirect_after_lookups(ifindex: u32, lookups: usize) -> anyhow::Result<RawProg> {
    let mut asm = Asm::default();
    let mut maps = Vec::new();
    if lookups > 0 {
        let h = map_create(BPF_MAP_TYPE_HASH, 8, 16)?;
        map_update(&h, 7, &1u64.to_ne_bytes())?;
        asm.st_w(10, -8, 7);
        for _ in 0..lookups {
            asm.ld_map_fd(1, h.as_raw_fd());
            asm.mov_reg(2, 10);
            asm.add_imm(2, -8);
            asm.call(HELPER_MAP_LOOKUP);
            asm.jeq_imm_drop(0, 0);
        }
        maps.push(h);
    }
    asm.mov_imm(1, ifindex as i32);
    asm.mov_imm(2, 0);
    asm.call(HELPER_REDIRECT);
    asm.insns.push(i(0x95, 0, 0, 0, 0));
    load("rg_redirect", &asm.finish(), maps)
}

/// A sink that writes `frame` back at `data + offset` and drops.
pub fn restoring_sink(frame: &[u8], offset: usize) -> anyhow::Result<RawProg> {
    let mut a = Asm::default();
    a.ldx_w(2, 1, 0); // data
    a.ldx_w(3, 1, 4); // data_end
    a.mov_reg(4, 2);
    a.add_imm(4, (offset + frame.len()) as i32);
    a.jgt_reg_drop(4, 3);
    a.store_bytes(2, offset, frame);
    load("rg_restore", &a.finish(), Vec::new())
}

/// Where the dynamic fields of a tunnel frame sit.
pub struct TunnelFrameLayout {
    /// Bytes the decapsulation removed in front (sink grows the head by this).
    pub head_delta: i32,
    /// Bytes the decapsulation removed at the end.
    pub tail_delta: i32,
    /// Offset of the 8-byte sequence number in the frame.
    pub seq_off: usize,
    /// Offset of the 16-byte tag.
    pub tag_off: usize,
}

/// A sink for decapsulated frames: grows the frame back to the tunnel frame,
/// writes its constant bytes, then sequence number `first_seq + n` and the
/// `n`-th tag from `tags` for the `n`-th frame it sees, and drops. After
/// `tags.len()` frames it only drops.
pub fn reseeding_sink(
    frame: &[u8],
    layout: &TunnelFrameLayout,
    first_seq: u64,
    tags: &[[u8; 16]],
) -> anyhow::Result<RawProg> {
    let mut a = Asm::default();
    a.mov_reg(6, 1);
    a.mov_reg(1, 6);
    a.mov_imm(2, -layout.head_delta);
    a.call(HELPER_XDP_ADJUST_HEAD);
    a.jne_imm_drop(0, 0);
    a.mov_reg(1, 6);
    a.mov_imm(2, layout.tail_delta);
    a.call(HELPER_XDP_ADJUST_TAIL);
    a.jne_imm_drop(0, 0);
    let maps = a.next_tag(tags)?;
    // the frame
    a.ldx_w(2, 6, 0);
    a.ldx_w(3, 6, 4);
    a.mov_reg(4, 2);
    a.add_imm(4, frame.len() as i32);
    a.jgt_reg_drop(4, 3);
    a.store_stamped(frame, layout.seq_off, layout.tag_off, first_seq);
    load("rg_reseed", &a.finish(), maps)
}

/// Sequence numbers and tags a [`generator`] stamps into its frames.
pub struct Stamp<'a> {
    /// Offset of the 8-byte sequence number in the frame.
    pub seq_off: usize,
    /// Offset of the 16-byte tag.
    pub tag_off: usize,
    /// Sequence number of the first frame.
    pub first_seq: u64,
    /// The tag of each frame in turn; after the last, frames are dropped.
    pub tags: &'a [[u8; 16]],
}

/// Bytes the SipHash probe authenticates: as many as roamgate's MAC covers
/// for a 128-byte inner packet (the 24-byte prefix and the inner packet).
pub const SIPHASH_PROBE_LEN: usize = 152;

/// The floor of the MAC in this harness: SipHash-2-4-128 under the key
/// (`k0`, `k1`) over the first [`SIPHASH_PROBE_LEN`] bytes of the frame and
/// nothing else: one bounds check, then straight-line code (no loop, no
/// map, no helper) with the state in registers. It writes the tag over the
/// frame's first 16 bytes (so a test can check it) and returns XDP_DROP.
pub fn siphash_probe(k0: u64, k1: u64) -> anyhow::Result<RawProg> {
    const WORDS: usize = SIPHASH_PROBE_LEN / 8;
    let mut a = Asm::default();
    // r2 = data, r3 = data_end; drop unless 152 bytes are there.
    a.ldx_w(2, 1, 0);
    a.ldx_w(3, 1, 4);
    a.mov_reg(8, 2);
    a.add_imm(8, SIPHASH_PROBE_LEN as i32);
    a.jgt_reg_drop(8, 3);
    // v0..v3 = r4..r7, the 128-bit initialisation.
    a.ld_imm64(4, k0 ^ 0x736f_6d65_7073_6575);
    a.ld_imm64(5, k1 ^ 0x646f_7261_6e64_6f6d ^ 0xee);
    a.ld_imm64(6, k0 ^ 0x6c79_6765_6e65_7261);
    a.ld_imm64(7, k1 ^ 0x7465_6462_7974_6573);
    for w in 0..WORDS {
        a.ldx_dw(8, 2, (w * 8) as i16);
        a.sip_compress();
    }
    // The last word: no tail bytes (152 = 19 x 8), the length on top.
    a.ld_imm64(8, (SIPHASH_PROBE_LEN as u64) << 56);
    a.sip_compress();
    a.xor_imm(6, 0xee);
    for _ in 0..4 {
        a.sipround();
    }
    let lo = |a: &mut Asm| {
        a.mov_reg(8, 4);
        a.xor_reg(8, 5);
        a.xor_reg(8, 6);
        a.xor_reg(8, 7);
    };
    lo(&mut a);
    a.stx_dw(2, 8, 0);
    a.xor_imm(5, 0xdd);
    for _ in 0..4 {
        a.sipround();
    }
    lo(&mut a);
    a.stx_dw(2, 8, 8);
    a.mov_imm(0, XDP_DROP);
    a.insns.push(i(0x95, 0, 0, 0, 0));
    load("rg_siphash", &a.finish(), Vec::new())
}

/// A traffic generator for the live-frames mode of BPF_PROG_TEST_RUN: it
/// writes `frame` at the start of every page it is given (the page may come
/// back rewritten by the program under test), stamps the `n`-th frame with
/// its sequence number and tag if asked to, and redirects it out of
/// `out_ifindex`, so the program under test runs where it is deployed: as
/// the native XDP program of the veth the frame arrives on.
pub fn generator(frame: &[u8], stamp: Option<&Stamp>, out_ifindex: u32) -> anyhow::Result<RawProg> {
    let mut maps = Vec::new();
    let mut a = Asm::default();
    a.mov_reg(6, 1);
    if let Some(st) = stamp {
        maps = a.next_tag(st.tags)?;
    }
    a.ldx_w(2, 6, 0); // data
    a.ldx_w(3, 6, 4); // data_end
    a.mov_reg(4, 2);
    a.add_imm(4, frame.len() as i32);
    a.jgt_reg_drop(4, 3);
    match stamp {
        None => a.store_bytes(2, 0, frame),
        Some(st) => a.store_stamped(frame, st.seq_off, st.tag_off, st.first_seq),
    }
    a.mov_imm(1, out_ifindex as i32);
    a.mov_imm(2, 0);
    a.call(HELPER_REDIRECT);
    a.insns.push(i(0x95, 0, 0, 0, 0));
    load("rg_generator", &a.finish(), maps)
}

impl RawProg {
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Attaches to `ifindex` (in the calling thread's network namespace)
    /// with a BPF link; the attachment lasts as long as the returned fd.
    pub fn attach_xdp(&self, ifindex: u32) -> anyhow::Result<OwnedFd> {
        let mut a = [0u8; 128];
        put_u32(&mut a, 0, self.fd() as u32);
        put_u32(&mut a, 4, ifindex);
        put_u32(&mut a, 8, BPF_XDP);
        let fd = bpf(BPF_LINK_CREATE, &mut a).context("BPF_LINK_CREATE (XDP)")?;
        // SAFETY: a new link fd from the kernel.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Result of one BPF_PROG_TEST_RUN.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    pub retval: u32,
    /// Kernel-measured ns per repetition.
    pub duration_ns: u32,
    pub data_out_len: u32,
}

/// BPF_PROG_TEST_RUN of any XDP program fd. `live_batch` selects the
/// live-frames mode (no data_out then). `ingress_ifindex` fills the xdp_md
/// context (0: none).
pub fn test_run(
    prog_fd: RawFd,
    data: &[u8],
    repeat: u32,
    ingress_ifindex: u32,
    live_batch: Option<u32>,
    data_out: Option<&mut [u8]>,
) -> anyhow::Result<RunResult> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let mut ctx = [0u32; 6];
    ctx[1] = data.len() as u32;
    ctx[3] = ingress_ifindex;
    let mut a = [0u8; 128];
    put_u32(&mut a, 0, prog_fd as u32);
    put_u32(&mut a, 8, data.len() as u32);
    put_u64(&mut a, 16, data.as_ptr() as u64);
    let out_len = data_out.as_ref().map(|o| o.len()).unwrap_or(0);
    if let Some(out) = data_out {
        put_u32(&mut a, 12, out.len() as u32);
        put_u64(&mut a, 24, out.as_mut_ptr() as u64);
    }
    put_u32(&mut a, 32, repeat);
    if ingress_ifindex != 0 {
        put_u32(&mut a, 40, std::mem::size_of_val(&ctx) as u32);
        put_u64(&mut a, 48, ctx.as_ptr() as u64);
    }
    if let Some(b) = live_batch {
        put_u32(&mut a, 64, BPF_F_TEST_XDP_LIVE_FRAMES);
        put_u32(&mut a, 72, b);
    }
    bpf(BPF_PROG_TEST_RUN, &mut a).context("BPF_PROG_TEST_RUN")?;
    let rd = |off: usize| u32::from_ne_bytes([a[off], a[off + 1], a[off + 2], a[off + 3]]);
    let _ = out_len;
    Ok(RunResult {
        retval: rd(4),
        duration_ns: rd(36),
        data_out_len: rd(12),
    })
}

/// `run_time_ns` and `run_cnt` in the kernel's `struct bpf_prog_info`
/// (linux/bpf.h, since 5.1): the offsets, and the info length that holds
/// them.
const PROG_INFO_RUN_TIME_NS: usize = 192;
const PROG_INFO_RUN_CNT: usize = 200;

/// The kernel's own statistics of program `fd`: (run_time_ns, run_cnt),
/// the time spent in the program and the number of runs. They grow only
/// while `kernel.bpf_stats_enabled` is 1 (see [`BpfStats`]), for every run:
/// attached to a device, or through BPF_PROG_TEST_RUN.
pub fn prog_run_stats(fd: RawFd) -> anyhow::Result<(u64, u64)> {
    let mut info = [0u8; 256];
    let mut a = [0u8; 128];
    put_u32(&mut a, 0, fd as u32);
    put_u32(&mut a, 4, info.len() as u32);
    put_u64(&mut a, 8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a).context("BPF_OBJ_GET_INFO_BY_FD")?;
    let len = u32::from_ne_bytes([a[4], a[5], a[6], a[7]]) as usize;
    if len < PROG_INFO_RUN_CNT + 8 {
        bail!("this kernel's bpf_prog_info ({len} bytes) has no run statistics");
    }
    let rd = |off: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&info[off..off + 8]);
        u64::from_ne_bytes(b)
    };
    Ok((rd(PROG_INFO_RUN_TIME_NS), rd(PROG_INFO_RUN_CNT)))
}

/// `kernel.bpf_stats_enabled = 1` while it lives; the value it found is
/// written back when it is dropped.
pub struct BpfStats {
    previous: String,
}

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> anyhow::Result<Self> {
        let previous = std::fs::read_to_string(BPF_STATS_SYSCTL)
            .with_context(|| format!("reading {BPF_STATS_SYSCTL}"))?;
        std::fs::write(BPF_STATS_SYSCTL, "1")
            .with_context(|| format!("writing 1 to {BPF_STATS_SYSCTL}"))?;
        Ok(Self {
            previous: previous.trim().to_owned(),
        })
    }

    /// The value before [`BpfStats::enable`].
    pub fn previous(&self) -> &str {
        &self.previous
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS_SYSCTL, &self.previous);
    }
}

/// Nanoseconds per run of program `fd` over what `f` makes it run, by the
/// kernel's statistics (None if it did not run).
pub fn ns_per_run<T>(
    fd: RawFd,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Option<f64>)> {
    let (t0, c0) = prog_run_stats(fd)?;
    let out = f()?;
    let (t1, c1) = prog_run_stats(fd)?;
    let runs = c1.saturating_sub(c0);
    Ok((
        out,
        (runs > 0).then(|| t1.saturating_sub(t0) as f64 / runs as f64),
    ))
}

/// Whether this kernel runs BPF_PROG_TEST_RUN in live-frames mode
/// (`BPF_F_TEST_XDP_LIVE_FRAMES`): a two-instruction XDP_DROP program,
/// once. Err says why not (some kernels refuse it with EPERM even to root).
pub fn live_frames_supported() -> Result<(), String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let p = constant(XDP_DROP).map_err(|e| format!("{e:#}"))?;
    test_run(p.fd(), &[0u8; 64], 1, 0, Some(1), None)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES refused by Linux {}: {e:#}",
                release.trim()
            )
        })
}

/// The ifindex of `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: a valid NUL-terminated name.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("no interface {name}: {}", std::io::Error::last_os_error());
    }
    Ok(idx)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Needs root (BPF_PROG_LOAD).
    use super::*;

    #[test]
    fn constant_programs_return_their_action() {
        let frame = [0u8; 64];
        for action in [XDP_PASS, XDP_DROP] {
            let p = constant(action).unwrap();
            let r = test_run(p.fd(), &frame, 1000, 0, None, None).unwrap();
            assert_eq!(r.retval, action as u32);
        }
    }

    #[test]
    fn the_kernel_counts_each_run_while_its_statistics_are_on() {
        let p = constant(XDP_PASS).unwrap();
        let frame = [0u8; 64];
        let stats = BpfStats::enable().unwrap();
        let (_, ns) = ns_per_run(p.fd(), || test_run(p.fd(), &frame, 1000, 0, None, None)).unwrap();
        let (t0, c0) = prog_run_stats(p.fd()).unwrap();
        test_run(p.fd(), &frame, 250, 0, None, None).unwrap();
        let (t1, c1) = prog_run_stats(p.fd()).unwrap();
        drop(stats);
        assert_eq!(c1 - c0, 250, "run_cnt");
        assert!(t1 > t0, "run_time_ns");
        let ns = ns.expect("counted runs");
        assert!(ns > 0.0 && ns < 10_000.0, "{ns} ns per run of XDP_PASS");
        // Off again (unless it was on before): nothing more is counted.
        if std::fs::read_to_string(BPF_STATS_SYSCTL).unwrap().trim() == "0" {
            test_run(p.fd(), &frame, 100, 0, None, None).unwrap();
            assert_eq!(prog_run_stats(p.fd()).unwrap().1, c1);
        }
    }

    #[test]
    fn the_siphash_probe_computes_roamgates_siphash_2_4_128() {
        use roamgate_common::siphash::SipHash24;
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let p = siphash_probe(k0, k1).unwrap();
        let frame: Vec<u8> = (0..200u32).map(|k| (k * 13 + 7) as u8).collect();
        let mut out = vec![0u8; 256];
        let r = test_run(p.fd(), &frame, 1, 0, None, Some(&mut out)).unwrap();
        assert_eq!(r.retval, XDP_DROP as u32);
        let mut s = SipHash24::new128(k0, k1);
        for w in frame[..SIPHASH_PROBE_LEN].chunks(8) {
            s.compress(u64::from_le_bytes(w.try_into().unwrap()));
        }
        let (lo, hi) = s.finish128((SIPHASH_PROBE_LEN as u64) << 56);
        assert_eq!(out[..8], lo.to_le_bytes());
        assert_eq!(out[8..16], hi.to_le_bytes());
        assert_eq!(out[16..200], frame[16..200]);
        // Too short a frame is dropped untouched.
        let r = test_run(p.fd(), &frame[..151], 1, 0, None, Some(&mut out)).unwrap();
        assert_eq!(r.retval, XDP_DROP as u32);
        assert_eq!(out[..151], frame[..151]);
    }

    #[test]
    fn redirect_programs_redirect_after_their_lookups() {
        let frame = [0u8; 64];
        for lookups in [0, 4] {
            let p = redirect_after_lookups(1, lookups).unwrap();
            let r = test_run(p.fd(), &frame, 1, 0, None, None).unwrap();
            assert_eq!(r.retval, 4, "{lookups} lookups: XDP_REDIRECT");
        }
    }

    #[test]
    fn generator_stamps_sequence_and_tag_then_redirects() {
        let frame: Vec<u8> = (0..100u32).map(|k| k as u8).collect();
        let tags = [[0xaa; 16], [0xbb; 16]];
        let st = Stamp {
            seq_off: 60,
            tag_off: 68,
            first_seq: 41,
            tags: &tags,
        };
        let g = generator(&frame, Some(&st), 1).unwrap();
        let mut out = vec![0u8; 256];
        let zero = vec![0u8; 100];
        for (n, tag) in tags.iter().enumerate() {
            let r = test_run(g.fd(), &zero, 1, 0, None, Some(&mut out)).unwrap();
            assert_eq!(r.retval, 4);
            let o = &out[..r.data_out_len as usize];
            assert_eq!(&o[..60], &frame[..60]);
            assert_eq!(o[60..68], (41 + n as u64).to_be_bytes());
            assert_eq!(&o[68..84], tag);
            assert_eq!(&o[84..], &frame[84..]);
        }
        let r = test_run(g.fd(), &zero, 1, 0, None, None).unwrap();
        assert_eq!(r.retval, XDP_DROP as u32, "out of tags: dropped");
    }

    #[test]
    fn restoring_sink_writes_the_frame_back() {
        let original: Vec<u8> = (0..142u32).map(|k| (k * 7 + 1) as u8).collect();
        let sink = restoring_sink(&original, 32).unwrap();
        let seen = vec![0xeeu8; 202];
        let mut out = vec![0u8; 512];
        let r = test_run(sink.fd(), &seen, 1, 0, None, Some(&mut out)).unwrap();
        assert_eq!(r.retval, XDP_DROP as u32);
        assert_eq!(&out[32..32 + 142], &original[..]);
        assert_eq!(&out[..32], &seen[..32]);
    }

    #[test]
    fn reseeding_sink_grows_the_frame_and_writes_seq_and_tag() {
        let frame: Vec<u8> = (0..202u32).map(|k| (k * 3 + 5) as u8).collect();
        let layout = TunnelFrameLayout {
            head_delta: 32,
            tail_delta: 28,
            seq_off: 202 - 24,
            tag_off: 202 - 16,
        };
        let tags: Vec<[u8; 16]> = (0..3u8).map(|k| [k + 0x10; 16]).collect();
        let sink = reseeding_sink(&frame, &layout, 100, &tags).unwrap();
        // What the sink sees: the decapsulated frame, 202 - 32 - 28 bytes.
        let seen = vec![0xeeu8; 142];
        let mut out = vec![0u8; 512];
        for k in 0..3u64 {
            let r = test_run(sink.fd(), &seen, 1, 0, None, Some(&mut out)).unwrap();
            assert_eq!(r.retval, XDP_DROP as u32);
            assert_eq!(r.data_out_len, 202, "frame grown back");
            assert_eq!(&out[..178], &frame[..178]);
            assert_eq!(&out[178..186], &(100 + k).to_be_bytes());
            assert_eq!(&out[186..202], &tags[k as usize]);
        }
        // Past the last tag it only drops, leaving the frame as grown.
        let r = test_run(sink.fd(), &seen, 1, 0, None, Some(&mut out)).unwrap();
        assert_eq!(r.retval, XDP_DROP as u32);
    }
}
