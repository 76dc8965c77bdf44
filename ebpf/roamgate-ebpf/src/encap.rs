//! Into the tunnel: a packet to a bound home address (home agent), or from
//! one (care-of side, reverse tunnel), is wrapped in outer IPv4 | UDP |
//! RFC 3519 header, followed by the trailer with the next sequence number
//! and the MAC.

use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
        generated::{bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    },
    programs::XdpContext,
};
use roamgate_common::{
    counters,
    maps::{BindingKey, BindingValue, TunnelKey, BINDING_CARE_OF, BINDING_HOME_AGENT},
    siphash::{tag_bytes, SipHash24},
    wire::{
        ethernet::{EthHdr, ETHERTYPE_IPV4},
        ipv4::{Ipv4Hdr, DSCP_EF},
        tunnel::{
            mac_prefix_words, outer_ipv4, EncapRepr, Trailer, TunnelHdr, OUTER_HDRS_LEN, OVERHEAD,
        },
        udp::UdpHdr,
        Header,
    },
};

use crate::{
    atomic::fetch_add,
    error::Error,
    fib::{forward, Route},
    mac::{finish_over_packet, key_words, MAX_INNER_LEN},
    maps::{binding, count, is_inside, now_ns, TUNNELS},
    packet::{frame_len, header, header_mut},
    voice,
};

/// Encapsulates the IPv4 packet at offset 14 if a binding matches; `Ok(None)`
/// if none does (not roamgate's traffic).
#[inline(always)]
pub fn encap(ctx: &XdpContext) -> Result<Option<u32>, Error> {
    let ip: &Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    let binding = match binding(BindingKey::new(ip.dst, BINDING_HOME_AGENT)) {
        Some(b) => b,
        None => match binding(BindingKey::new(ip.src, BINDING_CARE_OF)) {
            // Only what the node's own side sends goes into the tunnel: the
            // same source from an uplink is a host there spoofing the unit.
            Some(b) if is_inside(ctx.ingress_ifindex() as u32) => b,
            Some(_) => return Err(Error::SpoofedUplink),
            None => return Ok(None),
        },
    };
    into_tunnel(ctx, binding).map(Some)
}

/// Encapsulates the IPv4 packet at offset 14 if its destination is a home
/// address bound at this home agent; `Ok(None)` if it is not.
#[inline(always)]
pub fn encap_home_agent(ctx: &XdpContext) -> Result<Option<u32>, Error> {
    let ip: &Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    match binding(BindingKey::new(ip.dst, BINDING_HOME_AGENT)) {
        Some(b) => into_tunnel(ctx, b).map(Some),
        None => Ok(None),
    }
}

#[inline(always)]
fn into_tunnel(ctx: &XdpContext, binding: *const BindingValue) -> Result<u32, Error> {
    let ip: &Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    // SAFETY: a live map value, written only by userspace (whole).
    let b = unsafe { *binding };
    let now = now_ns();
    if now >= b.expires_ns {
        return Err(Error::Expired);
    }
    let tunnel = TUNNELS
        .get_ptr_mut(TunnelKey { spi: b.spi })
        .ok_or(Error::NoTunnel)?;
    // Other CPUs write `tx_seq` and `rx` of this value atomically, so no
    // reference to the whole value is made: the fields below are read by
    // value through the pointer. Userspace writes them only by replacing
    // the tunnel whole.
    // SAFETY: a live map value.
    let (expires_ns, mtu) = unsafe { ((*tunnel).expires_ns, (*tunnel).mtu) };
    if now >= expires_ns {
        return Err(Error::Expired);
    }

    let hl = ip.header_len();
    let inner_tot = ip.total_len() as usize;
    if ip.version() != 4 || hl < Ipv4Hdr::LEN || inner_tot < hl {
        return Err(Error::Malformed);
    }
    if EthHdr::LEN + inner_tot > frame_len(ctx) {
        return Err(Error::Truncated);
    }
    if inner_tot > MAX_INNER_LEN || inner_tot + OVERHEAD > mtu as usize {
        return Err(Error::OverMtu);
    }
    if ip.ttl <= 1 {
        return Err(Error::Ttl);
    }
    // Not authenticated here: authorise and mark, but leave the window alone.
    let is_voice = voice::check(ctx, EthHdr::LEN, now, false)?;
    let ip: &mut Ipv4Hdr = header_mut(ctx, EthHdr::LEN)?;
    ip.decrement_ttl();
    if is_voice {
        ip.set_dscp(DSCP_EF);
        count(counters::VOICE_FORWARDED, 1);
    }
    let tos = ip.tos;

    // SAFETY: a live, 8-byte aligned map value; `tx_seq` is only touched
    // atomically while shared.
    let seq = unsafe { fetch_add(core::ptr::addr_of_mut!((*tunnel).tx_seq), 1) }.wrapping_add(1);
    // SAFETY: a live map value; fields written only by userspace, by value.
    let (local, src_port, dst_port) =
        unsafe { ((*tunnel).local, (*tunnel).src_port, (*tunnel).dst_port) };
    let repr = EncapRepr {
        src: local,
        dst: b.remote,
        src_port: u16::from_be_bytes(src_port),
        dst_port: u16::from_be_bytes(dst_port),
        spi: b.spi,
        seq,
    };

    // Grow: room for the outer headers in front, the trailer behind (and
    // drop any link padding behind the inner packet).
    let eth: &EthHdr = header(ctx, 0)?;
    let (dst_mac, src_mac) = (eth.dst, eth.src);
    let grow_head = OUTER_HDRS_LEN as i32;
    let new_len = (EthHdr::LEN + OVERHEAD + inner_tot) as i32;
    let grow_tail = new_len - (frame_len(ctx) as i32 + grow_head);
    // SAFETY: helper on our own context; packet pointers are re-derived
    // from ctx afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow_head) } != 0 {
        return Err(Error::Resize);
    }
    // SAFETY: as above.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, grow_tail) } != 0 {
        // No tailroom (veth, for one, copies a frame into a buffer rounded up
        // to 64 bytes): take the trailer's room at the front as well and
        // slide the inner packet up to its place.
        make_room_in_front(ctx, inner_tot)?;
    }

    let eth: &mut EthHdr = header_mut(ctx, 0)?;
    eth.dst = dst_mac;
    eth.src = src_mac;
    eth.set_ether_type(ETHERTYPE_IPV4);
    let total = (OVERHEAD + inner_tot) as u16;
    let outer: &mut Ipv4Hdr = header_mut(ctx, EthHdr::LEN)?;
    *outer = outer_ipv4(&repr, tos, total);
    let udp: &mut UdpHdr = header_mut(ctx, EthHdr::LEN + Ipv4Hdr::LEN)?;
    *udp = UdpHdr {
        src_port,
        dst_port,
        len: (total - Ipv4Hdr::LEN as u16).to_be_bytes(),
        check: [0, 0],
    };
    let th: &mut TunnelHdr = header_mut(ctx, EthHdr::LEN + Ipv4Hdr::LEN + UdpHdr::LEN)?;
    *th = TunnelHdr::IPV4;
    let inner_off = EthHdr::LEN + OUTER_HDRS_LEN;
    let trailer_off = inner_off + inner_tot;
    {
        let tr: &mut Trailer = header_mut(ctx, trailer_off).map_err(|_| Error::Truncated)?;
        tr.spi = repr.spi;
        tr.seq = seq.to_be_bytes();
    }
    // SAFETY: `key_tx` of a live, 8-byte aligned map value, at offset 0.
    let (k0, k1) = unsafe { key_words(core::ptr::addr_of!((*tunnel).key_tx)) };
    let mut s = SipHash24::new128(k0, k1);
    for w in mac_prefix_words(repr.src, repr.dst, repr.spi, seq.to_be_bytes()) {
        s.compress(w);
    }
    let tag = finish_over_packet(ctx, s, inner_off, inner_tot)?;
    let tr: &mut Trailer = header_mut(ctx, trailer_off).map_err(|_| Error::Truncated)?;
    tr.tag = tag_bytes(tag);
    count(counters::TUNNEL_ENCAP, 1);
    forward(
        ctx,
        &Route {
            src: repr.src,
            dst: repr.dst,
            tos,
            tot_len: total,
        },
        now,
    )
}

/// Bytes moved per helper call when sliding a packet.
const MOVE_CHUNK: u32 = 64;

/// Fallback when the tail cannot grow. The frame is `[outer room][eth][inner]
/// [link padding]`; grow the head by the trailer's length too, move the inner
/// packet forward over that extra room, and cut what is left behind it, giving
/// `[eth][outer room][inner][trailer room]`.
///
/// A BPF-to-BPF call, not inlined: the copy loop's states stay in the callee's
/// frame, so the verifier does not walk the rest of encap once per iteration.
#[inline(never)]
fn make_room_in_front(ctx: &XdpContext, inner_tot: usize) -> Result<(), Error> {
    // SAFETY: helper on our own context; pointers are re-derived afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(Trailer::LEN as i32)) } != 0 {
        return Err(Error::Resize);
    }
    let to = (EthHdr::LEN + OUTER_HDRS_LEN) as u32;
    let from = to + Trailer::LEN as u32;
    let len = inner_tot as u32;
    let mut buf = [0u8; MOVE_CHUNK as usize];
    let mut done = 0u32;
    for _ in 0..(MAX_INNER_LEN as u32 / MOVE_CHUNK + 1) {
        if done >= len {
            break;
        }
        let rest = len - done;
        // 1..=MOVE_CHUNK in a form the verifier can bound (rest > 0 here).
        let n = if rest >= MOVE_CHUNK {
            MOVE_CHUNK
        } else {
            ((rest - 1) & (MOVE_CHUNK - 1)) + 1
        };
        let p = buf.as_mut_ptr() as *mut c_void;
        // SAFETY: `buf` holds MOVE_CHUNK >= n bytes; the helpers check the
        // frame offsets themselves. Chunks go front to back and `to < from`,
        // so no byte is overwritten before it is read.
        if unsafe { bpf_xdp_load_bytes(ctx.ctx, from + done, p, n) } != 0
            || unsafe { bpf_xdp_store_bytes(ctx.ctx, to + done, p, n) } != 0
        {
            return Err(Error::Resize);
        }
        done += n;
    }
    // The loop bound covers MAX_INNER_LEN, which encap checked before. Not
    // testing `done` here keeps it dead, so the verifier can merge the states
    // leaving the loop instead of walking the MAC loop once for each.
    let want = EthHdr::LEN + OVERHEAD + inner_tot;
    let shrink = want as i32 - frame_len(ctx) as i32;
    // SAFETY: as above; `shrink` is never positive here (the frame already
    // holds eth + OVERHEAD + inner + any padding).
    if shrink != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, shrink) } != 0 {
        return Err(Error::Resize);
    }
    Ok(())
}
