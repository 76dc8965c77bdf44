// SPDX-License-Identifier: GPL-2.0
//
// The C reference of roamgate's receiving end (issue 15): the decap_verify
// work of ebpf/roamgate-ebpf, written the way a C XDP program is written,
// and built by the bench with clang 22 and the Rust build's codegen options
// (roamgate_testkit::reference::COMPILE_FLAGS). It exists to be timed next to
// roamgate's program, so it must do the same work to the byte:
//
//  - the same entry counting and classification (IPv4 / UDP 434 / type 4),
//  - the same checks in the same order, with the same counters and actions,
//  - SipHash-2-4-128 over the same words (docs/wire.md), constant-time compare,
//  - the same shared replay window (cmpxchg + fetch-or), the same voice check,
//  - the same maps, by the same names and layouts, pinned the same way, so
//    the control plane's map code installs tunnels into it unchanged,
//  - the same per-CPU next-hop cache, bpf_fib_lookup and bpf_redirect.
//
// Not its work: encapsulation. Frames that are not tunnel data pass after
// the classification (roamgate would look them up in its bindings), and a
// unit's packet for another bound home address, which roamgate re-tunnels at
// the home agent, passes after the binding lookup. A fixture test
// (userspace/roamgate/tests/reference_equivalence.rs) checks that both
// programs give the same action, output frame and counters on every
// decapsulation fixture.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/types.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define INLINE static inline __attribute__((always_inline))
// Hides a value from the optimiser, so a bounds check is made on the very
// register the packet access uses (as roamgate's `opaque`).
#define OPAQUE(x) asm volatile("" : "+r"(x))

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static __u64 (*bpf_ktime_get_boot_ns)(void) = (void *)BPF_FUNC_ktime_get_boot_ns;
static __u64 (*bpf_jiffies64)(void) = (void *)BPF_FUNC_jiffies64;
static long (*bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen,
			      __u32 flags) = (void *)BPF_FUNC_fib_lookup;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;
static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_head;
static long (*bpf_xdp_adjust_tail)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_tail;

// ---- maps: aya's legacy `maps` section layout (bpf_map_def + pinning) ----

struct map_def {
	__u32 type, key_size, value_size, max_entries, map_flags, id, pinning;
};
#define PIN_BY_NAME 1
#define NO_PREALLOC 1
#define MAP(name, t, k, v, n, flags, pin)                                      \
	struct map_def name SEC("maps") = {                                    \
		.type = t, .key_size = k, .value_size = v, .max_entries = n,   \
		.map_flags = flags, .pinning = pin }

struct binding_key { __u8 addr[4]; __u8 kind; __u8 pad[3]; };
struct binding_value { __u8 remote[4]; __u8 spi[4]; __u64 expires_ns; };
struct replay_window { __u64 top; __u64 bitmap[4]; };
struct tunnel_value {
	__u64 key_tx[2];
	__u64 key_rx[2];
	__u32 local, home;
	__u16 src_port, dst_port, mtu;
	__u8 role, pad;
	__u64 expires_ns, tx_seq;
	struct replay_window rx;
};
struct voice_port_key { __u32 addr; __u16 port; __u16 pad; };
// `proto` and its three zero bytes as one little-endian word (17, 0, 0, 0).
struct voice_flow_key { __u32 src, dst; __u16 src_port, dst_port; __u32 proto; __u32 ssrc; };
struct voice_flow_value { __u64 expires_ns; struct replay_window window; };
struct next_hop {
	__u64 filled_ns;
	__u32 src, dst, ingress, ifindex;
	__u16 max_len;
	__u8 tos, pad;
	__u8 dmac[6], smac[6];
};
struct clock_cache { __u64 jiffies, boot_ns; };

_Static_assert(sizeof(struct tunnel_value) == 104, "TunnelValue is 104 bytes");
_Static_assert(sizeof(struct voice_flow_key) == 20, "VoiceFlowKey is 20 bytes");
_Static_assert(sizeof(struct voice_flow_value) == 48, "VoiceFlowValue is 48 bytes");
_Static_assert(sizeof(struct next_hop) == 40, "NextHop is 40 bytes");

MAP(RG_COUNTERS, BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 64, 0, PIN_BY_NAME);
MAP(RG_BINDINGS, BPF_MAP_TYPE_HASH, 8, 16, 1 << 20, NO_PREALLOC, PIN_BY_NAME);
MAP(RG_BIND_FILTER, BPF_MAP_TYPE_ARRAY, 4, 4, 1 << 16, 0, PIN_BY_NAME);
MAP(RG_INSIDE_IFS, BPF_MAP_TYPE_HASH, 4, 4, 64, 0, PIN_BY_NAME);
MAP(RG_TUNNELS, BPF_MAP_TYPE_HASH, 4, 104, 1 << 20, NO_PREALLOC, PIN_BY_NAME);
MAP(RG_VOICE_PORTS, BPF_MAP_TYPE_HASH, 8, 4, 1 << 16, 0, PIN_BY_NAME);
MAP(RG_VOICE_BITS, BPF_MAP_TYPE_ARRAY, 4, 8, 1024, 0, PIN_BY_NAME);
MAP(RG_VOICE_FLOWS, BPF_MAP_TYPE_HASH, 20, 48, 1 << 16, 0, PIN_BY_NAME);
MAP(RG_NEXTHOPS, BPF_MAP_TYPE_PERCPU_ARRAY, 4, 40, 256, 0, 0);
MAP(RG_CLOCK, BPF_MAP_TYPE_PERCPU_ARRAY, 4, 16, 1, 0, 0);

// ---- counters (roamgate_common::counters) ----

enum {
	RX_PACKETS = 0, RX_BYTES = 1, RX_NON_IPV4 = 2, RX_IPV4 = 3, RX_TRUNCATED = 4,
	ACTION_ABORTED = 5, ACTION_DROP = 6, ACTION_PASS = 7, ACTION_TX = 8, ACTION_REDIRECT = 9,
	DROP_MALFORMED = 10, DROP_TRUNCATED = 11, DROP_FRAGMENTED = 12, DROP_UNKNOWN_SPI = 13,
	DROP_BAD_MAC = 14, DROP_REPLAYED = 15, DROP_TOO_OLD = 16, DROP_EXPIRED = 17,
	DROP_TTL = 18, DROP_OVER_MTU = 19, DROP_SPOOFED = 20, DROP_VOICE_UNAUTHORISED = 21,
	DROP_VOICE_REPLAYED = 22, ABORT_RESIZE = 24, TUNNEL_DECAP = 26,
	VOICE_FORWARDED = 27, RX_MIP_CONTROL = 28, FIB_PASS = 29, DROP_REPLAY_CONTENDED = 30,
	FIB_LOOKUPS = 31, RX_TRANSIT = 32,
};

// Errors: 0 is success; each maps to one action and counter in `roamgate`.
enum {
	OK = 0, E_SHORT, E_MALFORMED, E_TRUNCATED, E_FRAGMENTED, E_UNKNOWN_SPI, E_BAD_MAC,
	E_REPLAYED, E_TOO_OLD, E_CONTENDED, E_EXPIRED, E_TTL, E_OVER_MTU, E_SPOOFED,
	E_VOICE_UNAUTHORISED, E_VOICE_REPLAYED, E_RESIZE,
};

#define MIP_PORT 434
#define TYPE_TUNNEL_DATA 4
#define NEXT_HEADER_IPV4 4
#define TUNNEL_HDR_LEN 4
#define TRAILER_LEN 28
#define MAC_PREFIX_LEN 24
#define MAX_INNER_LEN 2048
#define MAX_FRAME_OFF 0x1fff
#define ROLE_HOME_AGENT 1
#define ROLE_CARE_OF 2
#define BINDING_HOME_AGENT 1
#define DSCP_EF 46
#define NEXTHOP_TTL_NS 20000000ULL
#define NEXTHOP_SLOT_BITS 8

INLINE void count(__u32 idx, __u64 n)
{
	__u64 *slot = bpf_map_lookup_elem(&RG_COUNTERS, &idx);
	if (slot)
		*slot += n;
}

INLINE __u64 now_ns(void)
{
	__u64 j = bpf_jiffies64();
	__u32 zero = 0;
	struct clock_cache *c = bpf_map_lookup_elem(&RG_CLOCK, &zero);
	if (!c)
		return bpf_ktime_get_boot_ns();
	if (c->jiffies != j || c->boot_ns == 0) {
		c->jiffies = j;
		c->boot_ns = bpf_ktime_get_boot_ns();
	}
	return c->boot_ns;
}

// ---- packet access ----

INLINE __u64 frame_len(struct xdp_md *ctx)
{
	// Subtracted as pointers, then hidden: narrowed to 32 bits, clang would
	// spill half a packet pointer, which the verifier refuses.
	__u64 n = (void *)(long)ctx->data_end - (void *)(long)ctx->data;
	OPAQUE(n);
	return n;
}

// The `len` bytes at frame offset `off`, or NULL when the frame is shorter.
INLINE void *at(struct xdp_md *ctx, __u64 off, __u64 len)
{
	OPAQUE(off);
	off &= MAX_FRAME_OFF;
	void *p = (void *)(long)ctx->data + off;
	OPAQUE(p);
	if (p + len > (void *)(long)ctx->data_end)
		return 0;
	return p;
}

INLINE __u64 load64(const void *p)
{
	return *(const __u64 *)p;
}

INLINE __u16 update_checksum(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u32)(__u16)~check + (__u32)(__u16)~old + new;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~(__u16)sum;
}

INLINE int decrement_ttl(struct iphdr *ip)
{
	if (ip->ttl <= 1)
		return 0;
	__u16 old = (__u16)ip->ttl << 8 | ip->protocol;
	ip->ttl--;
	__u16 new = (__u16)ip->ttl << 8 | ip->protocol;
	ip->check = __builtin_bswap16(update_checksum(__builtin_bswap16(ip->check), old, new));
	return 1;
}

INLINE void set_dscp(struct iphdr *ip, __u8 dscp)
{
	__u8 vihl = *(__u8 *)ip;
	__u16 old = (__u16)vihl << 8 | ip->tos;
	ip->tos = (dscp << 2) | (ip->tos & 3);
	__u16 new = (__u16)vihl << 8 | ip->tos;
	ip->check = __builtin_bswap16(update_checksum(__builtin_bswap16(ip->check), old, new));
}

// Copies a MAC address in three 2-byte moves. Every MAC here sits at an
// even offset, and the verifier wants stack access aligned, where clang's
// memcpy would use a 4-byte move once misaligned access is allowed.
INLINE void copy_mac(void *dst, const void *src)
{
	__u16 *d = dst;
	const __u16 *s = src;
	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
}

#define MF 0x2000
#define OFFSET_MASK 0x1fff

// ---- SipHash-2-4-128 (roamgate_common::siphash) ----

struct sip { __u64 v0, v1, v2, v3; };

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(s)                                                            \
	do {                                                                   \
		s.v0 += s.v1; s.v1 = ROTL(s.v1, 13); s.v1 ^= s.v0;             \
		s.v0 = ROTL(s.v0, 32);                                         \
		s.v2 += s.v3; s.v3 = ROTL(s.v3, 16); s.v3 ^= s.v2;             \
		s.v0 += s.v3; s.v3 = ROTL(s.v3, 21); s.v3 ^= s.v0;             \
		s.v2 += s.v1; s.v1 = ROTL(s.v1, 17); s.v1 ^= s.v2;             \
		s.v2 = ROTL(s.v2, 32);                                         \
	} while (0)
#define COMPRESS(s, m)                                                         \
	do {                                                                   \
		__u64 m_ = (m);                                                \
		s.v3 ^= m_; SIPROUND(s); SIPROUND(s); s.v0 ^= m_;              \
	} while (0)

// Absorbs the inner packet (`len` bytes at `off`) into `s`, finishes, and
// compares with the received tag in constant time. The last partial word
// over-reads into the trailer, which always follows the inner packet.
INLINE int mac_verify(struct xdp_md *ctx, struct sip s, __u64 off, __u64 len, __u64 tag_lo,
		      __u64 tag_hi)
{
	len &= MAX_INNER_LEN * 2 - 1;
	__u64 blocks = len / 32;
	for (__u64 i = 0; i < MAX_INNER_LEN / 32; i++) {
		if (i >= blocks)
			break;
		__u8 *p = at(ctx, off + i * 32, 32);
		if (!p)
			return E_TRUNCATED;
		COMPRESS(s, load64(p));
		COMPRESS(s, load64(p + 8));
		COMPRESS(s, load64(p + 16));
		COMPRESS(s, load64(p + 24));
	}
	__u64 done = blocks * 32;
	__u64 words = (len % 32) / 8;
	for (__u64 j = 0; j < 3; j++) {
		if (j >= words)
			break;
		__u8 *p = at(ctx, off + done + j * 8, 8);
		if (!p)
			return E_TRUNCATED;
		COMPRESS(s, load64(p));
	}
	__u8 *p = at(ctx, off + (len & ~7ULL), 8);
	if (!p)
		return E_TRUNCATED;
	__u64 total = MAC_PREFIX_LEN + len;
	__u32 rem = total & 7;
	__u64 mask = ((1ULL << (rem * 4)) << (rem * 4)) - 1;
	__u64 last = (load64(p) & mask) | (total << 56);
	COMPRESS(s, last);
	s.v2 ^= 0xee;
	SIPROUND(s); SIPROUND(s); SIPROUND(s); SIPROUND(s);
	__u64 lo = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
	s.v1 ^= 0xdd;
	SIPROUND(s); SIPROUND(s); SIPROUND(s); SIPROUND(s);
	__u64 hi = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
	return ((lo ^ tag_lo) | (hi ^ tag_hi)) == 0 ? OK : E_BAD_MAC;
}

// ---- replay window (roamgate_common::replay::accept_shared) ----

INLINE int accept_shared(struct replay_window *w, __u64 seq)
{
	if (seq == 0)
		return E_TOO_OLD;
	__u64 top = *(volatile __u64 *)&w->top;
	int tries;
	for (tries = 0; tries < 4 && seq > top; tries++) {
		__u64 moved = seq / 64 - top / 64;
		for (__u64 i = 0; i < 4; i++)
			if (i < moved)
				*(volatile __u64 *)&w->bitmap[(top / 64 + 1 + i) & 3] = 0;
		__u64 prev = __sync_val_compare_and_swap(&w->top, top, seq);
		top = prev == top ? seq : prev;
	}
	if (seq > top)
		return E_CONTENDED;
	if (top - seq >= 3 * 64)
		return E_TOO_OLD;
	__u64 bit = 1ULL << (seq & 63);
	if (__sync_fetch_and_or(&w->bitmap[(seq / 64) & 3], bit) & bit)
		return E_REPLAYED;
	return OK;
}

// ---- voice (roamgate_common::flow, ebpf voice.rs) ----

struct rtp_hdr { __u8 vpxcc, mpt; __u16 seq; __u32 timestamp, ssrc; };

INLINE __u64 extend_rtp_seq(__u64 top, __u16 seq)
{
	const __u64 roll = 1 << 16, half = 1 << 15;
	if (top < roll)
		return roll | seq;
	__u64 cand = (top & ~(roll - 1)) | seq;
	if (cand > top && cand - top > half && cand >= 2 * roll)
		return cand - roll;
	if (cand < top && top - cand > half)
		return cand + roll;
	return cand;
}

INLINE int is_rtcp_pt(__u8 b)
{
	return b >= 192 && b <= 223;
}

// 1: accepted voice; 0: not for a voice port; negative: the error.
INLINE int voice_check(struct xdp_md *ctx, __u64 ip_off, __u64 now, int authenticated)
{
	struct iphdr *ip = at(ctx, ip_off, sizeof(*ip));
	if (!ip)
		return -E_SHORT;
	__u16 frag = __builtin_bswap16(ip->frag_off);
	if (ip->protocol != IPPROTO_UDP || (frag & OFFSET_MASK))
		return 0;
	__u64 hl = ip->ihl * 4;
	__u64 udp_off = ip_off + hl;
	struct udphdr *udp = at(ctx, udp_off, sizeof(*udp));
	if (!udp)
		return 0;
	__u16 dport = __builtin_bswap16(udp->dest);
	__u32 word = dport >> 6;
	__u64 *bits = bpf_map_lookup_elem(&RG_VOICE_BITS, &word);
	if (!bits || !(*bits & (1ULL << (dport & 63))))
		return 0;
	struct voice_port_key pk = { .addr = ip->daddr, .port = udp->dest, .pad = 0 };
	if (!bpf_map_lookup_elem(&RG_VOICE_PORTS, &pk))
		return 0;
	__u64 tot = __builtin_bswap16(ip->tot_len);
	__u64 ulen = __builtin_bswap16(udp->len);
	if ((frag & MF) || tot < hl || ulen < sizeof(*udp) || ulen > tot - hl)
		return -E_VOICE_UNAUTHORISED;
	__u64 payload = ulen - sizeof(*udp);
	struct rtp_hdr *rtp = at(ctx, udp_off + sizeof(*udp), sizeof(*rtp));
	if (!rtp)
		return -E_VOICE_UNAUTHORISED;
	__u32 ssrc;
	int is_rtp = 0;
	if (payload < sizeof(*rtp)) {
		if (!(payload >= 8 && rtp->vpxcc >> 6 == 2 && is_rtcp_pt(rtp->mpt)))
			return -E_VOICE_UNAUTHORISED;
		ssrc = rtp->timestamp;
	} else if (rtp->vpxcc >> 6 != 2) {
		return -E_VOICE_UNAUTHORISED;
	} else if (is_rtcp_pt(rtp->mpt)) {
		ssrc = rtp->timestamp;
	} else {
		ssrc = rtp->ssrc;
		is_rtp = 1;
	}
	struct voice_flow_key fk = {
		.src = ip->saddr, .dst = ip->daddr, .src_port = udp->source,
		.dst_port = udp->dest, .proto = IPPROTO_UDP, .ssrc = ssrc,
	};
	struct voice_flow_value *flow = bpf_map_lookup_elem(&RG_VOICE_FLOWS, &fk);
	if (!flow || now >= flow->expires_ns)
		return -E_VOICE_UNAUTHORISED;
	if (authenticated && is_rtp) {
		__u64 top = *(volatile __u64 *)&flow->window.top;
		if (accept_shared(&flow->window, extend_rtp_seq(top, __builtin_bswap16(rtp->seq))))
			return -E_VOICE_REPLAYED;
	}
	return 1;
}

// ---- forwarding (ebpf fib.rs) ----

struct route { __u32 src, dst; __u8 tos; __u16 tot_len; };

enum hop_kind { HOP_OUT, HOP_KERNEL, HOP_NOT_FORWARDED };
struct hop { __u32 ifindex; __u8 smac[6], dmac[6]; };

INLINE __u32 nexthop_slot(__u32 ingress, const struct route *r)
{
	__u32 h = r->dst ^ ((r->src << 16) | (r->src >> 16)) ^ ingress ^ r->tos;
	return (h * 0x9e3779b1u) >> (32 - NEXTHOP_SLOT_BITS);
}

INLINE int fresh(const struct next_hop *e, __u64 now, __u32 ingress, const struct route *r)
{
	return e->filled_ns != 0 && now - e->filled_ns < NEXTHOP_TTL_NS && e->dst == r->dst &&
	       e->src == r->src && e->ingress == ingress && e->tos == r->tos;
}

INLINE enum hop_kind resolve(struct xdp_md *ctx, const struct route *r, __u64 now, struct hop *out)
{
	__u32 ingress = ctx->ingress_ifindex;
	__u32 slot = nexthop_slot(ingress, r);
	struct next_hop *e = bpf_map_lookup_elem(&RG_NEXTHOPS, &slot);
	if (e && fresh(e, now, ingress, r) && r->tot_len <= e->max_len) {
		if (e->ifindex == 0)
			return HOP_NOT_FORWARDED;
		out->ifindex = e->ifindex;
		copy_mac(out->smac, e->smac);
		copy_mac(out->dmac, e->dmac);
		return HOP_OUT;
	}
	struct bpf_fib_lookup p = {};
	p.family = 2; // AF_INET
	p.tot_len = r->tot_len;
	p.ifindex = ingress;
	p.tos = r->tos;
	p.ipv4_src = r->src;
	p.ipv4_dst = r->dst;
	count(FIB_LOOKUPS, 1);
	long rc = bpf_fib_lookup(ctx, &p, sizeof(p), 0);
	enum hop_kind kind;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		kind = HOP_OUT;
		out->ifindex = p.ifindex;
		copy_mac(out->smac, p.smac);
		copy_mac(out->dmac, p.dmac);
	} else if (rc == BPF_FIB_LKUP_RET_NO_NEIGH || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		return HOP_KERNEL;
	} else {
		kind = HOP_NOT_FORWARDED;
	}
	if (e) {
		int same = fresh(e, now, ingress, r);
		e->max_len = same && e->max_len > r->tot_len ? e->max_len : r->tot_len;
		e->src = r->src;
		e->dst = r->dst;
		e->ingress = ingress;
		e->tos = r->tos;
		if (kind == HOP_OUT) {
			e->ifindex = out->ifindex;
			copy_mac(e->smac, out->smac);
			copy_mac(e->dmac, out->dmac);
		} else {
			e->ifindex = 0;
		}
		e->filled_ns = now ? now : 1;
	}
	return kind;
}

INLINE int forward(struct xdp_md *ctx, const struct route *r, __u64 now, __u32 *action)
{
	struct hop h;
	if (resolve(ctx, r, now, &h) != HOP_OUT) {
		count(FIB_PASS, 1);
		*action = XDP_PASS;
		return OK;
	}
	struct ethhdr *eth = at(ctx, 0, sizeof(*eth));
	if (!eth)
		return E_SHORT;
	copy_mac(eth->h_dest, h.dmac);
	copy_mac(eth->h_source, h.smac);
	*action = bpf_redirect(h.ifindex, 0);
	return OK;
}

// ---- decapsulation (ebpf decap.rs) ----

INLINE int authenticate(struct xdp_md *ctx, __u32 spi, __u64 seq_word, __u64 tag_lo, __u64 tag_hi,
			__u64 addr_word, __u64 tot, __u64 inner_off, __u64 inner_tot, __u64 now,
			struct tunnel_value **out)
{
	struct tunnel_value *t = bpf_map_lookup_elem(&RG_TUNNELS, &spi);
	if (!t)
		return E_UNKNOWN_SPI;
	if (now >= t->expires_ns)
		return E_EXPIRED;
	if (tot > t->mtu)
		return E_OVER_MTU;
	__u64 k0 = t->key_rx[0], k1 = t->key_rx[1];
	struct sip s = {
		.v0 = k0 ^ 0x736f6d6570736575ULL,
		.v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee,
		.v2 = k0 ^ 0x6c7967656e657261ULL,
		.v3 = k1 ^ 0x7465646279746573ULL,
	};
	COMPRESS(s, addr_word);
	COMPRESS(s, (__u64)spi | (__u64)TYPE_TUNNEL_DATA << 32 | (__u64)NEXT_HEADER_IPV4 << 40);
	COMPRESS(s, seq_word);
	int err = mac_verify(ctx, s, inner_off, inner_tot, tag_lo, tag_hi);
	if (err)
		return err;
	*out = t;
	return OK;
}

INLINE int decap(struct xdp_md *ctx, __u64 hl, __u32 *action)
{
	struct iphdr *ip = at(ctx, ETH_HLEN, sizeof(*ip));
	if (!ip)
		return E_SHORT;
	if (__builtin_bswap16(ip->frag_off) & MF)
		return E_FRAGMENTED;
	__u8 *th = at(ctx, ETH_HLEN + hl + sizeof(struct udphdr), TUNNEL_HDR_LEN);
	if (!th)
		return E_SHORT;
	if (th[0] != TYPE_TUNNEL_DATA || th[1] != NEXT_HEADER_IPV4 || th[2] || th[3])
		return E_MALFORMED;
	__u64 tot = __builtin_bswap16(ip->tot_len);
	__u64 outer_min = hl + sizeof(struct udphdr) + TUNNEL_HDR_LEN;
	if (tot < outer_min + sizeof(struct iphdr) + TRAILER_LEN)
		return E_MALFORMED;
	if (ETH_HLEN + tot > frame_len(ctx))
		return E_TRUNCATED;
	struct udphdr *udp = at(ctx, ETH_HLEN + hl, sizeof(*udp));
	if (!udp)
		return E_SHORT;
	if (__builtin_bswap16(udp->len) != tot - hl)
		return E_MALFORMED;

	__u64 inner_off = ETH_HLEN + outer_min;
	struct iphdr *inner = at(ctx, inner_off, sizeof(*inner));
	if (!inner)
		return E_TRUNCATED;
	__u64 inner_tot = __builtin_bswap16(inner->tot_len);
	__u64 inner_hl = inner->ihl * 4;
	if (inner->version != 4 || inner_hl < sizeof(*inner) || inner_tot < inner_hl ||
	    outer_min + inner_tot + TRAILER_LEN != tot)
		return E_MALFORMED;
	if (inner_tot > MAX_INNER_LEN)
		return E_OVER_MTU;
	__u8 *tr = at(ctx, inner_off + inner_tot, TRAILER_LEN);
	if (!tr)
		return E_TRUNCATED;
	__u32 spi = *(__u32 *)tr;
	__u64 seq_word = load64(tr + 4), tag_lo = load64(tr + 12), tag_hi = load64(tr + 20);
	__u64 seq = __builtin_bswap64(seq_word);
	ip = at(ctx, ETH_HLEN, sizeof(*ip));
	if (!ip)
		return E_SHORT;
	__u64 addr_word = load64((__u8 *)ip + 12);

	__u64 now = now_ns();
	struct tunnel_value *t = 0;
	int err = authenticate(ctx, spi, seq_word, tag_lo, tag_hi, addr_word, tot, inner_off,
			       inner_tot, now, &t);
	if (err) {
		// Maybe not ours: another endpoint's tunnel passing through.
		ip = at(ctx, ETH_HLEN, sizeof(*ip));
		if (!ip)
			return E_SHORT;
		struct route outer = { .src = ip->saddr, .dst = ip->daddr, .tos = ip->tos,
				       .tot_len = tot };
		struct hop h;
		if (resolve(ctx, &outer, now, &h) != HOP_NOT_FORWARDED) {
			count(RX_TRANSIT, 1);
			*action = XDP_PASS;
			return OK;
		}
		return err;
	}
	__u8 role = t->role;
	__u32 home = t->home;

	err = accept_shared(&t->rx, seq);
	if (err)
		return err;

	inner = at(ctx, inner_off, sizeof(*inner));
	if (!inner)
		return E_TRUNCATED;
	int spoofed = role == ROLE_HOME_AGENT ? inner->saddr != home
		    : role == ROLE_CARE_OF    ? inner->daddr != home
					      : 1;
	if (spoofed)
		return E_SPOOFED;
	if (!decrement_ttl(inner))
		return E_TTL;
	int voice = voice_check(ctx, inner_off, now, role == ROLE_HOME_AGENT);
	if (voice < 0)
		return -voice;
	inner = at(ctx, inner_off, sizeof(*inner));
	if (!inner)
		return E_TRUNCATED;
	if (voice) {
		set_dscp(inner, DSCP_EF);
		count(VOICE_FORWARDED, 1);
	}
	struct route r = { .src = inner->saddr, .dst = inner->daddr, .tos = inner->tos,
			   .tot_len = inner_tot };

	struct ethhdr *eth = at(ctx, 0, sizeof(*eth));
	if (!eth)
		return E_SHORT;
	__u8 dmac[6] __attribute__((aligned(2))), smac[6] __attribute__((aligned(2)));
	copy_mac(dmac, eth->h_dest);
	copy_mac(smac, eth->h_source);
	int strip = hl + sizeof(struct udphdr) + TUNNEL_HDR_LEN;
	int shrink = (int)(ETH_HLEN + inner_tot) - ((int)frame_len(ctx) - strip);
	if (bpf_xdp_adjust_head(ctx, strip))
		return E_RESIZE;
	if (bpf_xdp_adjust_tail(ctx, shrink))
		return E_RESIZE;
	eth = at(ctx, 0, sizeof(*eth));
	if (!eth)
		return E_SHORT;
	copy_mac(eth->h_dest, dmac);
	copy_mac(eth->h_source, smac);
	eth->h_proto = __builtin_bswap16(ETH_P_IP);
	count(TUNNEL_DECAP, 1);
	if (role == ROLE_HOME_AGENT) {
		// roamgate re-tunnels a packet for another bound unit here (encap's
		// work, not this reference's): look the binding up, then pass.
		struct binding_key k = { .kind = BINDING_HOME_AGENT };
		__builtin_memcpy(k.addr, &r.dst, 4);
		__u32 x = __builtin_bswap32(r.dst) ^ ((__u32)BINDING_HOME_AGENT << 16);
		__u32 fslot = (x * 0x9e3779b1u) >> 16;
		__u32 *mark = bpf_map_lookup_elem(&RG_BIND_FILTER, &fslot);
		if (mark && *mark && bpf_map_lookup_elem(&RG_BINDINGS, &k)) {
			*action = XDP_PASS;
			return OK;
		}
	}
	return forward(ctx, &r, now, action);
}

INLINE int try_decap_verify(struct xdp_md *ctx, __u32 *action)
{
	struct ethhdr *eth = at(ctx, 0, sizeof(*eth));
	if (!eth)
		return E_SHORT;
	if (eth->h_proto != __builtin_bswap16(ETH_P_IP)) {
		count(RX_NON_IPV4, 1);
		*action = XDP_PASS;
		return OK;
	}
	struct iphdr *ip = at(ctx, ETH_HLEN, sizeof(*ip));
	if (!ip)
		return E_SHORT;
	count(RX_IPV4, 1);
	__u64 hl = ip->ihl * 4;
	*action = XDP_PASS;
	if (ip->version != 4 || hl < sizeof(*ip))
		return OK;
	if (ip->protocol == IPPROTO_UDP && !(__builtin_bswap16(ip->frag_off) & OFFSET_MASK)) {
		struct udphdr *udp = at(ctx, ETH_HLEN + hl, sizeof(*udp));
		if (udp && udp->dest == __builtin_bswap16(MIP_PORT)) {
			__u8 *th = at(ctx, ETH_HLEN + hl + sizeof(*udp), TUNNEL_HDR_LEN);
			if (th) {
				if (th[0] == TYPE_TUNNEL_DATA)
					return decap(ctx, hl, action);
				count(RX_MIP_CONTROL, 1);
				return OK;
			}
		}
	}
	// Not tunnel data: roamgate's encapsulation would look here.
	return OK;
}

SEC("xdp")
int roamgate(struct xdp_md *ctx)
{
	count(RX_PACKETS, 1);
	count(RX_BYTES, frame_len(ctx));
	__u32 action = XDP_PASS;
	__u32 counter = 0;
	switch (try_decap_verify(ctx, &action)) {
	case OK: break;
	case E_SHORT: action = XDP_PASS; counter = RX_TRUNCATED; break;
	case E_MALFORMED: action = XDP_DROP; counter = DROP_MALFORMED; break;
	case E_TRUNCATED: action = XDP_DROP; counter = DROP_TRUNCATED; break;
	case E_FRAGMENTED: action = XDP_DROP; counter = DROP_FRAGMENTED; break;
	case E_UNKNOWN_SPI: action = XDP_DROP; counter = DROP_UNKNOWN_SPI; break;
	case E_BAD_MAC: action = XDP_DROP; counter = DROP_BAD_MAC; break;
	case E_REPLAYED: action = XDP_DROP; counter = DROP_REPLAYED; break;
	case E_TOO_OLD: action = XDP_DROP; counter = DROP_TOO_OLD; break;
	case E_CONTENDED: action = XDP_DROP; counter = DROP_REPLAY_CONTENDED; break;
	case E_EXPIRED: action = XDP_DROP; counter = DROP_EXPIRED; break;
	case E_TTL: action = XDP_DROP; counter = DROP_TTL; break;
	case E_OVER_MTU: action = XDP_DROP; counter = DROP_OVER_MTU; break;
	case E_SPOOFED: action = XDP_DROP; counter = DROP_SPOOFED; break;
	case E_VOICE_UNAUTHORISED: action = XDP_DROP; counter = DROP_VOICE_UNAUTHORISED; break;
	case E_VOICE_REPLAYED: action = XDP_DROP; counter = DROP_VOICE_REPLAYED; break;
	default: action = XDP_ABORTED; counter = ABORT_RESIZE; break;
	}
	if (counter)
		count(counter, 1);
	count(action <= XDP_REDIRECT ? ACTION_ABORTED + action : ACTION_ABORTED, 1);
	return action;
}

char LICENSE[] SEC("license") = "GPL";
