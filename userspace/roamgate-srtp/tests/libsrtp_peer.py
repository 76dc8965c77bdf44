"""libsrtp (through pylibsrtp) as the interop peer of tests/libsrtp_interop.rs.

Usage: /usr/bin/python3 libsrtp_peer.py PROFILE KEY_AND_SALT_HEX
PROFILE is aes128_cm_sha1_80 or aead_aes_128_gcm. Reads lines "OP HEX" on
stdin, OP one of protect, protect_rtcp, unprotect, unprotect_rtcp, and
answers each with "ok HEX" or "err MESSAGE" on stdout. One libsrtp
session protects (any outbound SSRC), another unprotects (any inbound
SSRC), both under the same master key and salt.
"""

import sys

import pylibsrtp

PROFILES = {
    "aes128_cm_sha1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "aead_aes_128_gcm": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}


def session(key, profile, ssrc_type):
    policy = pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile)
    return pylibsrtp.Session(policy=policy)


def main():
    profile = PROFILES[sys.argv[1]]
    key = bytes.fromhex(sys.argv[2])
    tx = session(key, profile, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    rx = session(key, profile, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    ops = {
        "protect": tx.protect,
        "protect_rtcp": tx.protect_rtcp,
        "unprotect": rx.unprotect,
        "unprotect_rtcp": rx.unprotect_rtcp,
    }
    for line in sys.stdin:
        op, data = line.split()
        try:
            out = ops[op](bytes.fromhex(data))
            print("ok", out.hex(), flush=True)
        except pylibsrtp.Error as e:
            print("err", str(e).replace(" ", "_"), flush=True)


if __name__ == "__main__":
    main()
