//! RFC 3961 §5.1 n-fold.

/// Folds `input` to `out_len` bytes as RFC 3961 §5.1 specifies: the input
/// is repeated lcm(in, out) bits long, each repetition rotated 13 bits to
/// the right of the previous, and the out-sized pieces are added with
/// end-around carry (ones' complement addition).
///
/// An empty `input` or `out_len == 0` gives `out_len` zero bytes (n-fold is
/// not defined there; we never call it so).
pub fn nfold(input: &[u8], out_len: usize) -> Vec<u8> {
    let in_len = input.len();
    if in_len == 0 || out_len == 0 {
        return vec![0; out_len];
    }
    let lcm = lcm(in_len, out_len);
    let in_bits = in_len * 8;
    // Byte i of the lcm-long stream: repetition r = i / in_len is the input
    // rotated right by 13 * r bits.
    let byte_at = |i: usize| -> u8 {
        let r = i / in_len;
        let rot = (13 * r) % in_bits;
        let pos = i % in_len;
        // Bit b of the rotated copy (MSB-first numbering) is bit
        // (b - rot) mod in_bits of the input.
        let mut out = 0u8;
        for bit in 0..8 {
            let b = pos * 8 + bit;
            let src = (b + in_bits - rot) % in_bits;
            let v = (input[src / 8] >> (7 - (src % 8))) & 1;
            out |= v << (7 - bit);
        }
        out
    };
    let mut acc = vec![0u32; out_len];
    for chunk in 0..lcm / out_len {
        for (j, a) in acc.iter_mut().enumerate() {
            *a += u32::from(byte_at(chunk * out_len + j));
        }
    }
    // Ones' complement: propagate carries from the least significant byte
    // (the last) leftwards, wrapping the top carry around, until stable.
    loop {
        let mut carry = 0u32;
        for a in acc.iter_mut().rev() {
            let v = *a + carry;
            *a = v & 0xff;
            carry = v >> 8;
        }
        if carry == 0 {
            break;
        }
        // The wrapped carry is added at the least significant end.
        if let Some(last) = acc.last_mut() {
            *last += carry;
        }
    }
    acc.into_iter().map(|a| a as u8).collect()
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}
