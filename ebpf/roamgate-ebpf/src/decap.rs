//! The receiving end: parse, then SPI lookup, then the MAC (constant time),
//! then the replay window, and only then forward the inner packet.

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_adjust_head, helpers::bpf_xdp_adjust_tail,
    programs::XdpContext,
};
use roamgate_common::{
    counters,
    maps::{TunnelKey, TunnelValue, ROLE_CARE_OF, ROLE_HOME_AGENT},
    replay::{accept_shared, ReplayError},
    siphash::{tags_equal, SipHash24},
    wire::{
        ethernet::{EthHdr, ETHERTYPE_IPV4},
        ipv4::{Ipv4Hdr, DSCP_EF},
        tunnel::{Trailer, TunnelHdr, MIN_INNER_LEN},
        udp::UdpHdr,
        Header,
    },
};

use crate::{
    atomic::BpfAtomics,
    error::Error,
    fib::{forward, is_transit, Route},
    mac::{finish_over_packet, key_words, MAX_INNER_LEN},
    maps::{count, now_ns, TUNNELS},
    packet::{frame_len, header, header_mut, load_u64},
    voice,
};

/// Handles a frame already classified as RFC 3519 tunnel data: outer IPv4
/// header length `hl` at offset 14, UDP at 14 + hl, tunnel header after it.
#[inline(always)]
pub fn decap(ctx: &XdpContext, hl: usize) -> Result<u32, Error> {
    let ip: &Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    if ip.more_fragments() {
        return Err(Error::Fragmented);
    }
    let th: &TunnelHdr = header(ctx, EthHdr::LEN + hl + UdpHdr::LEN)?;
    if !th.is_ipv4_data() {
        return Err(Error::Malformed);
    }
    let tot = ip.total_len() as usize;
    let outer_min = hl + UdpHdr::LEN + TunnelHdr::LEN;
    if tot < outer_min + MIN_INNER_LEN + Trailer::LEN {
        return Err(Error::Malformed);
    }
    if EthHdr::LEN + tot > frame_len(ctx) {
        return Err(Error::Truncated);
    }
    let udp: &UdpHdr = header(ctx, EthHdr::LEN + hl)?;
    if udp.len() as usize != tot - hl {
        return Err(Error::Malformed);
    }

    let inner_off = EthHdr::LEN + outer_min;
    let inner: &Ipv4Hdr = header(ctx, inner_off).map_err(|_| Error::Truncated)?;
    let inner_tot = inner.total_len() as usize;
    if inner.version() != 4
        || inner.header_len() < Ipv4Hdr::LEN
        || inner_tot < inner.header_len()
        || outer_min + inner_tot + Trailer::LEN != tot
    {
        return Err(Error::Malformed);
    }
    if inner_tot > MAX_INNER_LEN {
        return Err(Error::OverMtu);
    }
    let trailer: &Trailer = header(ctx, inner_off + inner_tot).map_err(|_| Error::Truncated)?;
    let spi = trailer.spi;
    let tp = trailer as *const Trailer as usize;
    // SAFETY: the whole trailer is inside the frame (checked by `header`).
    // The sequence is in network order: as a little-endian word it is MAC
    // word 2 as is, byte-swapped it is the number.
    let (seq_word, tag) = unsafe { (load_u64::<4>(tp), (load_u64::<12>(tp), load_u64::<20>(tp))) };
    let seq = seq_word.swap_bytes();
    let ip: &Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    // SAFETY: the outer header is inside the frame; src|dst is bytes 12..20.
    let addr_word = unsafe { load_u64::<12>(ip as *const Ipv4Hdr as usize) };

    let now = now_ns();
    // SPI lookup, expiry, MTU and MAC. A frame that fails here may simply
    // not be ours: an SPI of another endpoint's tunnel (or one that collides
    // with ours) on its way through this gateway. Only frames addressed to
    // this host are dropped; the others are the stack's to route.
    let tunnel = match authenticate(ctx, spi, seq_word, tag, addr_word, tot, inner_off, inner_tot, now) {
        Ok(t) => t,
        Err(e) => {
            let ip: &Ipv4Hdr = header(ctx, EthHdr::LEN)?;
            let outer = Route {
                src: ip.src,
                dst: ip.dst,
                tos: ip.tos,
                tot_len: tot as u16,
            };
            if is_transit(ctx, &outer, now) {
                count(counters::RX_TRANSIT, 1);
                return Ok(xdp_action::XDP_PASS);
            }
            return Err(e);
        }
    };
    // SAFETY: a live map value. Read by value, no reference to the whole
    // value (other CPUs write its `rx` and `tx_seq` atomically); userspace
    // writes these fields only by replacing the tunnel whole.
    let (role, home) = unsafe { ((*tunnel).role, (*tunnel).home) };

    // Replay window, only for authenticated packets.
    // SAFETY: a live, 8-byte aligned map value; `rx` is only touched
    // atomically while shared.
    let win = unsafe { core::ptr::addr_of_mut!((*tunnel).rx) };
    // SAFETY: as above.
    unsafe { accept_shared::<BpfAtomics>(win, seq) }.map_err(|e| match e {
        ReplayError::Duplicate => Error::Replayed,
        ReplayError::TooOld => Error::TooOld,
        ReplayError::Contended => Error::ReplayContended,
    })?;

    // The inner packet must belong to the tunnel's unit.
    let inner: &mut Ipv4Hdr = header_mut(ctx, inner_off).map_err(|_| Error::Truncated)?;
    let spoofed = match role {
        ROLE_HOME_AGENT => inner.src != home,
        ROLE_CARE_OF => inner.dst != home,
        _ => true,
    };
    if spoofed {
        return Err(Error::Spoofed);
    }
    if !inner.decrement_ttl() {
        return Err(Error::Ttl);
    }
    // The voice window moves only where the tunnel's MAC vouches for the
    // RTP sender: at the home agent, for the unit's own packets. On the
    // care-of side the inner packet is the correspondent's, which the home
    // agent tunnelled without authenticating it (docs/wire.md §7).
    let is_voice = voice::check(ctx, inner_off, now, role == ROLE_HOME_AGENT)?;
    let inner: &mut Ipv4Hdr = header_mut(ctx, inner_off).map_err(|_| Error::Truncated)?;
    if is_voice {
        inner.set_dscp(DSCP_EF);
        count(counters::VOICE_FORWARDED, 1);
    }
    let route = Route {
        src: inner.src,
        dst: inner.dst,
        tos: inner.tos,
        tot_len: inner_tot as u16,
    };

    // Strip: keep the Ethernet addresses, drop outer headers and trailer.
    let eth: &EthHdr = header(ctx, 0)?;
    let (dst_mac, src_mac) = (eth.dst, eth.src);
    let strip = (hl + UdpHdr::LEN + TunnelHdr::LEN) as i32;
    let new_len = (EthHdr::LEN + inner_tot) as i32;
    let shrink = new_len - (frame_len(ctx) as i32 - strip);
    // SAFETY: helper on our own context; packet pointers are re-derived
    // from ctx afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip) } != 0 {
        return Err(Error::Resize);
    }
    // SAFETY: as above.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, shrink) } != 0 {
        return Err(Error::Resize);
    }
    let eth: &mut EthHdr = header_mut(ctx, 0)?;
    eth.dst = dst_mac;
    eth.src = src_mac;
    eth.set_ether_type(ETHERTYPE_IPV4);
    count(counters::TUNNEL_DECAP, 1);
    // A unit's packet for another unit's home address goes back into that
    // unit's tunnel: the home agent intercepts whatever is addressed to a
    // unit away from home, whichever tunnel it came out of (RFC 5944
    // §4.2.3). Two units at home calling each other meet here.
    if role == ROLE_HOME_AGENT {
        if let Some(action) = crate::encap::encap_home_agent(ctx)? {
            return Ok(action);
        }
    }
    forward(ctx, &route, now)
}

/// The tunnel of `spi`, if it is live, the frame fits its MTU and the MAC
/// (compared in constant time) verifies.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn authenticate(
    ctx: &XdpContext,
    spi: [u8; 4],
    seq_word: u64,
    tag: (u64, u64),
    addr_word: u64,
    tot: usize,
    inner_off: usize,
    inner_tot: usize,
    now: u64,
) -> Result<*mut TunnelValue, Error> {
    let tunnel = TUNNELS
        .get_ptr_mut(TunnelKey { spi })
        .ok_or(Error::UnknownSpi)?;
    // SAFETY: a live map value. Read by value, no reference to the whole
    // value (other CPUs write its `rx` and `tx_seq` atomically); userspace
    // writes these fields only by replacing the tunnel whole.
    let (expires_ns, mtu) = unsafe { ((*tunnel).expires_ns, (*tunnel).mtu) };
    if now >= expires_ns {
        return Err(Error::Expired);
    }
    if tot > mtu as usize {
        return Err(Error::OverMtu);
    }
    // SAFETY: `key_rx` of a live, 8-byte aligned map value, at offset 16.
    let (k0, k1) = unsafe { key_words(core::ptr::addr_of!((*tunnel).key_rx)) };
    let mut s = SipHash24::new128(k0, k1);
    s.compress(addr_word);
    s.compress(u32::from_le_bytes(spi) as u64 | TunnelHdr::MAC_WORD_HIGH);
    s.compress(seq_word);
    let got = finish_over_packet(ctx, s, inner_off, inner_tot)?;
    if !tags_equal(got, tag) {
        return Err(Error::BadMac);
    }
    Ok(tunnel)
}
