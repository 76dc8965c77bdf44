//! AES in CBC mode with ciphertext stealing (RFC 3962 §5, the CBC-CS3
//! variant: the last two blocks are swapped), over the raw AES block
//! cipher of the RustCrypto `aes` crate. ring offers no raw AES, so this
//! mode is built here.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes256};

use crate::CryptoError;

/// The AES block size in bytes.
pub const BLOCK: usize = 16;

/// An AES key schedule of either size. The `aes` crate zeroizes the
/// schedule on drop.
pub(crate) enum Aes {
    A128(Box<Aes128>),
    A256(Box<Aes256>),
}

impl Aes {
    pub(crate) fn new(key: &[u8]) -> Result<Self, CryptoError> {
        match key.len() {
            16 => Ok(Aes::A128(Box::new(
                Aes128::new_from_slice(key).map_err(|_| CryptoError::BadAesKeyLength(16))?,
            ))),
            32 => Ok(Aes::A256(Box::new(
                Aes256::new_from_slice(key).map_err(|_| CryptoError::BadAesKeyLength(32))?,
            ))),
            n => Err(CryptoError::BadAesKeyLength(n)),
        }
    }

    pub(crate) fn encrypt_block(&self, block: &mut [u8; BLOCK]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Aes::A128(c) => c.encrypt_block(b),
            Aes::A256(c) => c.encrypt_block(b),
        }
    }

    fn decrypt_block(&self, block: &mut [u8; BLOCK]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Aes::A128(c) => c.decrypt_block(b),
            Aes::A256(c) => c.decrypt_block(b),
        }
    }
}

fn xor(a: &mut [u8; BLOCK], b: &[u8; BLOCK]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

fn block_at(data: &[u8], i: usize) -> [u8; BLOCK] {
    // Zero-pads a short final block.
    let mut b = [0u8; BLOCK];
    let start = i * BLOCK;
    let end = data.len().min(start + BLOCK);
    b[..end - start].copy_from_slice(&data[start..end]);
    b
}

/// Encrypts `data` (at least one block) with AES-CBC-CTS under `key` (16 or
/// 32 bytes) from the cipher state `iv`. Returns the ciphertext, as long as
/// `data`, and the next cipher state (RFC 3962's "Next IV": the last
/// full CBC block computed).
pub fn encrypt(
    key: &[u8],
    iv: &[u8; BLOCK],
    data: &[u8],
) -> Result<(Vec<u8>, [u8; BLOCK]), CryptoError> {
    let aes = Aes::new(key)?;
    encrypt_with(&aes, iv, data)
}

/// Decrypts `data` (at least one block) with AES-CBC-CTS. Returns the
/// plaintext and the next cipher state.
pub fn decrypt(
    key: &[u8],
    iv: &[u8; BLOCK],
    data: &[u8],
) -> Result<(Vec<u8>, [u8; BLOCK]), CryptoError> {
    let aes = Aes::new(key)?;
    decrypt_with(&aes, iv, data)
}

pub(crate) fn encrypt_with(
    aes: &Aes,
    iv: &[u8; BLOCK],
    data: &[u8],
) -> Result<(Vec<u8>, [u8; BLOCK]), CryptoError> {
    let n = data.len();
    if n < BLOCK {
        return Err(CryptoError::CtsInputTooShort(n));
    }
    let nblocks = n.div_ceil(BLOCK);
    let mut blocks: Vec<[u8; BLOCK]> = Vec::with_capacity(nblocks);
    let mut prev = *iv;
    for i in 0..nblocks {
        let mut b = block_at(data, i);
        xor(&mut b, &prev);
        aes.encrypt_block(&mut b);
        prev = b;
        blocks.push(b);
    }
    let next_iv = prev;
    if nblocks == 1 {
        return Ok((blocks[0].to_vec(), next_iv));
    }
    let last_len = n - (nblocks - 1) * BLOCK;
    let mut out = Vec::with_capacity(n);
    for b in &blocks[..nblocks - 2] {
        out.extend_from_slice(b);
    }
    out.extend_from_slice(&blocks[nblocks - 1]);
    out.extend_from_slice(&blocks[nblocks - 2][..last_len]);
    Ok((out, next_iv))
}

pub(crate) fn decrypt_with(
    aes: &Aes,
    iv: &[u8; BLOCK],
    data: &[u8],
) -> Result<(Vec<u8>, [u8; BLOCK]), CryptoError> {
    let n = data.len();
    if n < BLOCK {
        return Err(CryptoError::CtsInputTooShort(n));
    }
    let nblocks = n.div_ceil(BLOCK);
    let mut out = Vec::with_capacity(n);
    let mut prev = *iv;
    if nblocks == 1 {
        let c = block_at(data, 0);
        let mut p = c;
        aes.decrypt_block(&mut p);
        xor(&mut p, &prev);
        out.extend_from_slice(&p);
        return Ok((out, c));
    }
    for i in 0..nblocks - 2 {
        let c = block_at(data, i);
        let mut p = c;
        aes.decrypt_block(&mut p);
        xor(&mut p, &prev);
        out.extend_from_slice(&p);
        prev = c;
    }
    let last_len = n - (nblocks - 1) * BLOCK;
    // The full block at position n-2 is E(Pn || 0 ^ C(n-1)); the partial
    // block after it is C(n-1) truncated.
    let cn = block_at(data, nblocks - 2);
    let tail = &data[(nblocks - 1) * BLOCK..];
    let mut d = cn;
    aes.decrypt_block(&mut d);
    // d = (Pn || 0) ^ C(n-1): C(n-1) = tail || d[last_len..].
    let mut c_prev = [0u8; BLOCK];
    c_prev[..last_len].copy_from_slice(tail);
    c_prev[last_len..].copy_from_slice(&d[last_len..]);
    let mut pn = [0u8; BLOCK];
    for i in 0..last_len {
        pn[i] = d[i] ^ tail[i];
    }
    let mut p_prev = c_prev;
    aes.decrypt_block(&mut p_prev);
    xor(&mut p_prev, &prev);
    out.extend_from_slice(&p_prev);
    out.extend_from_slice(&pn[..last_len]);
    Ok((out, cn))
}
