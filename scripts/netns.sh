#!/usr/bin/env bash
# Test hosts in network namespaces. Used by tests/src/netns.rs and by hand.
#
#   netns.sh add NS                         create namespace NS with lo up
#   netns.sh veth NS1 IF1 CIDR1 NS2 IF2 CIDR2 [QUEUES]
#                                           veth pair between two namespaces,
#                                           addressed, up, TX checksum offload off,
#                                           QUEUES (default 1) RX and TX queues each
#   netns.sh bridge NS BR CIDR              bridge BR in NS, addressed, up
#   netns.sh port NS1 IF1 CIDR1 NS2 IF2 BR  veth pair: IF1 addressed in NS1,
#                                           IF2 a port of bridge BR in NS2
#   netns.sh route NS DEST VIA              add a route in NS
#   netns.sh forward NS                     enable IPv4 forwarding in NS
#   netns.sh destroy PREFIX                 delete every namespace named PREFIX*
#   netns.sh list PREFIX                    list namespaces named PREFIX*
set -euo pipefail

cmd=${1:-}
shift || true

# Runs a command in namespace $1's network only. Unlike `ip netns exec` it
# keeps the mount namespace, which also works where / cannot be made a
# slave mount (the initramfs of `cargo xtask kernel`).
in_ns() {
    local ns=$1
    shift
    nsenter --net="/run/netns/$ns" -- "$@"
}

case "$cmd" in
add)
    ip netns add "$1"
    ip -n "$1" link set lo up
    ;;
veth)
    ns1=$1 if1=$2 cidr1=$3 ns2=$4 if2=$5 cidr2=$6 q=${7:-1}
    ip link add "$if1" numtxqueues "$q" numrxqueues "$q" netns "$ns1" type veth \
        peer name "$if2" numtxqueues "$q" numrxqueues "$q" netns "$ns2"
    ip -n "$ns1" addr add "$cidr1" dev "$if1"
    ip -n "$ns2" addr add "$cidr2" dev "$if2"
    ip -n "$ns1" link set "$if1" up
    ip -n "$ns2" link set "$if2" up
    # Locally generated packets carry partial checksums; turn offload off so
    # what leaves the veth is what a real wire would carry.
    in_ns "$ns1" ethtool -K "$if1" tx off >/dev/null 2>&1 || true
    in_ns "$ns2" ethtool -K "$if2" tx off >/dev/null 2>&1 || true
    ;;
bridge)
    ip -n "$1" link add "$2" type bridge
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$1" link set "$2" up
    ;;
port)
    ns1=$1 if1=$2 cidr1=$3 ns2=$4 if2=$5 br=$6
    ip link add "$if1" netns "$ns1" type veth peer name "$if2" netns "$ns2"
    ip -n "$ns1" addr add "$cidr1" dev "$if1"
    ip -n "$ns2" link set "$if2" master "$br"
    ip -n "$ns1" link set "$if1" up
    ip -n "$ns2" link set "$if2" up
    in_ns "$ns1" ethtool -K "$if1" tx off >/dev/null 2>&1 || true
    in_ns "$ns2" ethtool -K "$if2" tx off >/dev/null 2>&1 || true
    ;;
route)
    ip -n "$1" route add "$2" via "$3"
    ;;
forward)
    in_ns "$1" sysctl -qw net.ipv4.ip_forward=1
    ;;
destroy)
    prefix=$1
    [ -n "$prefix" ] || { echo "destroy needs a non-empty prefix" >&2; exit 2; }
    for ns in $(ip netns list | awk '{print $1}' | grep "^${prefix}" || true); do
        # Kill anything still running inside, then the namespace.
        for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
            kill -9 "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    ;;
list)
    ip netns list | awk '{print $1}' | grep "^${1}" || true
    ;;
*)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac
