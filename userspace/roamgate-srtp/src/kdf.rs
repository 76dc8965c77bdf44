//! RFC 3711 §4.3: session keys from the master key and salt with the AES-CM
//! PRF (§4.3.3), key derivation rate 0 (so r = index DIV kdr = 0 and the
//! keys are derived once per master key).
//!
//! ring exposes no raw AES and no AES-CTR, so the PRF (and AES-CM packet
//! encryption) use RustCrypto `aes` + `ctr`.

use aes::cipher::{KeyInit, StreamCipher};
use aes::Aes128;
use ctr::cipher::{InnerIvInit, StreamCipherCoreWrapper};
use ctr::CtrCore;

/// AES-128 in counter mode, big-endian 128-bit counter (SRTP's AES-CM: the
/// IV's low 16 bits count blocks, and no packet reaches 2^16 blocks).
pub type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// Key derivation labels, RFC 3711 §4.3.1 (also RFC 7714 §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Label {
    RtpEncryption = 0x00,
    RtpAuthentication = 0x01,
    RtpSalt = 0x02,
    RtcpEncryption = 0x03,
    RtcpAuthentication = 0x04,
    RtcpSalt = 0x05,
}

/// AES-CM keystream under a prepared key schedule, XORed into `data`.
pub fn aes_cm_apply(cipher: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    let core = CtrCore::inner_iv_init(cipher.clone(), iv.into());
    let mut ctr: Aes128Ctr = StreamCipherCoreWrapper::from_core(core);
    ctr.apply_keystream(data);
}

/// The AES-CM PRF of §4.3.3 for `label`, filling `out`. `master_salt` is
/// the 112-bit salt (a 96-bit RFC 7714 salt is passed padded with two zero
/// octets on the right, as libsrtp does).
pub fn derive(master_key: &[u8; 16], master_salt: &[u8; 14], label: Label, out: &mut [u8]) {
    // x = key_id XOR master_salt, key_id = label || r (48 bits, here 0):
    // the label lands on octet 7 of the 14-octet salt. IV = x * 2^16.
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    iv[7] ^= label as u8;
    let cipher = Aes128::new(master_key.into());
    out.fill(0);
    aes_cm_apply(&cipher, &iv, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        let v = hex::decode(s.replace([' ', '\n'], "")).expect("hex");
        v.try_into().expect("length")
    }

    /// RFC 3711 Appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let key: [u8; 16] = h("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt: [u8; 14] = h("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        derive(&key, &salt, Label::RtpEncryption, &mut enc);
        assert_eq!(enc, h::<16>("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&key, &salt, Label::RtpSalt, &mut s);
        assert_eq!(s, h::<14>("30CBBC08863D8C85D49DB34A9AE1"));
        // The appendix runs the auth-key PRF to 94 octets (six blocks);
        // the session uses the first 20.
        let mut auth = [0u8; 94];
        derive(&key, &salt, Label::RtpAuthentication, &mut auth);
        assert_eq!(
            auth,
            h::<94>(
                "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
            )
        );
    }

    /// RFC 3711 Appendix B.2: the AES-CM keystream for session key 2B7E..,
    /// session salt F0F1..FCFD, SSRC 0, index 0 (IV = salt * 2^16).
    #[test]
    fn rfc3711_b2_keystream() {
        let cipher = Aes128::new(&h::<16>("2B7E151628AED2A6ABF7158809CF4F3C").into());
        let iv: [u8; 16] = h("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000");
        let mut ks = vec![0u8; 0xFF02 * 16];
        aes_cm_apply(&cipher, &iv, &mut ks);
        let block = |i: usize| -> [u8; 16] {
            let mut b = [0u8; 16];
            b.copy_from_slice(&ks[i * 16..i * 16 + 16]);
            b
        };
        assert_eq!(block(0), h::<16>("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(1), h::<16>("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(2), h::<16>("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xFEFF), h::<16>("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xFF00), h::<16>("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xFF01), h::<16>("6A2CC3787889374FBEB4C81B17BA6C44"));
    }
}
