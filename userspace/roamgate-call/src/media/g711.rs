//! ITU-T G.711 µ-law and A-law, 16-bit linear PCM in and out.
//!
//! The segment arithmetic of the ITU reference (Sun's g711.c, which CPython's
//! audioop and most stacks carry): 14-bit magnitudes with a bias of 0x21 for µ-law,
//! 13-bit with the even bits inverted (0x55) for A-law.

const ULAW_BIAS: i32 = 0x84;
/// Segment end points of the 14-bit µ-law and 13-bit A-law magnitudes.
const SEG_UEND: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];
const SEG_AEND: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];

fn segment(v: i32, ends: &[i32; 8]) -> Option<i32> {
    ends.iter().position(|&e| v <= e).map(|s| s as i32)
}

/// Encodes one linear sample as µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    // µ-law works on 14 bits; the shift rounds toward minus infinity, as
    // the reference does.
    let v = i32::from(sample) >> 2;
    let (mask, mag) = if v < 0 { (0x7f, -v) } else { (0xff, v) };
    let mag = mag.min(8159) + (ULAW_BIAS >> 2);
    match segment(mag, &SEG_UEND) {
        Some(seg) => (((seg << 4) | ((mag >> (seg + 1)) & 0x0f)) ^ mask) as u8,
        None => (0x7f ^ mask) as u8,
    }
}

/// Decodes one µ-law byte.
pub fn ulaw_decode(code: u8) -> i16 {
    let c = !code;
    let seg = i32::from((c >> 4) & 0x07);
    let mag = (((i32::from(c & 0x0f)) << 3) + ULAW_BIAS) << seg;
    let v = mag - ULAW_BIAS;
    (if c & 0x80 != 0 { -v } else { v }) as i16
}

/// Encodes one linear sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13 bits.
    let v = i32::from(sample) >> 3;
    let (mask, mag) = if v >= 0 { (0xd5, v) } else { (0x55, -v - 1) };
    match segment(mag, &SEG_AEND) {
        Some(seg) => {
            let shift = if seg < 2 { 1 } else { seg };
            (((seg << 4) | ((mag >> shift) & 0x0f)) ^ mask) as u8
        }
        None => (0x7f ^ mask) as u8,
    }
}

/// Decodes one A-law byte.
pub fn alaw_decode(code: u8) -> i16 {
    let c = i32::from(code ^ 0x55);
    let seg = (c & 0x70) >> 4;
    let mut t = (c & 0x0f) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    (if c & 0x80 != 0 { t } else { -t }) as i16
}

/// The two G.711 laws, as RTP's static payload types name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Law {
    /// PCMU, RTP payload type 0.
    Mu,
    /// PCMA, RTP payload type 8.
    A,
}

impl Law {
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Law::Mu),
            8 => Some(Law::A),
            _ => None,
        }
    }

    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        let f = match self {
            Law::Mu => ulaw_encode,
            Law::A => alaw_encode,
        };
        out.extend(samples.iter().map(|&s| f(s)));
    }

    pub fn decode(self, codes: &[u8], out: &mut Vec<i16>) {
        let f = match self {
            Law::Mu => ulaw_decode,
            Law::A => alaw_decode,
        };
        out.extend(codes.iter().map(|&c| f(c)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_points() {
        // Values from the G.711 tables: silence, the extremes.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_decode(0x2a), -32256);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for c in 0..=255u8 {
            // µ-law has two zeros (0x7f and 0xff); both decode to 0.
            let back = ulaw_encode(ulaw_decode(c));
            assert!(back == c || (c == 0x7f && back == 0xff), "µ-law {c:#x}");
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law {c:#x}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut prev = (i32::MIN, i32::MIN);
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ulaw_decode(ulaw_encode(s)));
            let a = i32::from(alaw_decode(alaw_encode(s)));
            assert!(u >= prev.0 && a >= prev.1, "at {s}");
            prev = (u, a);
        }
    }
}
