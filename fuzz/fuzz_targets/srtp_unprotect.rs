//! SRTP and SRTCP unprotection of both profiles never panics on any input,
//! an accepted packet comes out shorter by exactly its trailer, and the
//! same packet a second time is refused as a replay. The seeds
//! (seeds/srtp_unprotect/) are protected under this target's master key, so
//! mutations of genuine packets are explored too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamgate_srtp::{Context, Error, MasterKey, MasterSalt, Profile};

/// The master key and salt; fuzz/seedgen protects its seeds with them.
const KEY: [u8; 16] = [0x5a; 16];
const SALT: [u8; 14] = [0xa5; 14];

fuzz_target!(|data: &[u8]| {
    for profile in [Profile::AesCm128HmacSha1_80, Profile::AeadAes128Gcm] {
        let salt = MasterSalt::from_slice(&SALT[..profile.master_salt_len()]).expect("salt");
        let mut ctx = Context::new(profile, &MasterKey::new(KEY), &salt).expect("context");

        let mut rtp = data.to_vec();
        if ctx.unprotect_rtp_in_place(&mut rtp).is_ok() {
            let mut again = data.to_vec();
            assert_eq!(ctx.unprotect_rtp_in_place(&mut again), Err(Error::Replayed));
        }
        let mut pkt = data.to_vec();
        assert!(ctx.unprotect_rtp(&mut pkt).is_err(), "accepted twice");

        let mut fresh = Context::new(profile, &MasterKey::new(KEY), &salt).expect("context");
        let mut rtp = data.to_vec();
        if fresh.unprotect_rtp(&mut rtp).is_ok() {
            assert_eq!(rtp.len() + profile.rtp_trailer_len(), data.len());
        }
        let mut rtcp = data.to_vec();
        if fresh.unprotect_rtcp(&mut rtcp).is_ok() {
            assert_eq!(rtcp.len() + profile.rtcp_trailer_len(), data.len());
            let mut again = data.to_vec();
            assert_eq!(fresh.unprotect_rtcp(&mut again), Err(Error::Replayed));
        }
    }
});
