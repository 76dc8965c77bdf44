//! A unit's identity code: 128 random bits, created once by `roamgate unit
//! init` and shown as 32 lower-case hex digits. It names a unit; it proves
//! nothing (the unit's Kerberos key does that), so it may appear in logs.

use std::{fmt, str::FromStr};

use ring::rand::{SecureRandom, SystemRandom};

/// A unit's globally unique identity code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityCode([u8; IdentityCode::LEN]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityCodeError {
    #[error("an identity code is 32 hex digits, got {0}")]
    Length(usize),
    #[error("an identity code is hex digits only")]
    Hex,
    #[error("the system random source failed")]
    Random,
}

impl IdentityCode {
    pub const LEN: usize = 16;

    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// A fresh code from the system's random source.
    pub fn generate(rng: &SystemRandom) -> Result<Self, IdentityCodeError> {
        let mut b = [0u8; Self::LEN];
        rng.fill(&mut b).map_err(|_| IdentityCodeError::Random)?;
        Ok(Self(b))
    }
}

impl fmt::Display for IdentityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for IdentityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityCode({self})")
    }
}

impl FromStr for IdentityCode {
    type Err = IdentityCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != 2 * Self::LEN {
            return Err(IdentityCodeError::Length(s.len()));
        }
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(IdentityCodeError::Hex);
        }
        let mut b = [0u8; Self::LEN];
        for (i, o) in b.iter_mut().enumerate() {
            *o =
                u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| IdentityCodeError::Hex)?;
        }
        Ok(Self(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let c = IdentityCode::from_bytes(core::array::from_fn(|i| (i * 17) as u8));
        assert_eq!(c.to_string(), "00112233445566778899aabbccddeeff");
        assert_eq!(c.to_string().parse::<IdentityCode>().unwrap(), c);
        assert_eq!(
            format!("{c:?}"),
            "IdentityCode(00112233445566778899aabbccddeeff)"
        );
    }

    #[test]
    fn bad_text_is_refused() {
        assert_eq!(
            "abc".parse::<IdentityCode>(),
            Err(IdentityCodeError::Length(3))
        );
        let bad = "zz112233445566778899aabbccddeeff";
        assert_eq!(bad.parse::<IdentityCode>(), Err(IdentityCodeError::Hex));
        // Multi-byte characters must not panic the slicing.
        let wide = "é".repeat(16);
        assert!(wide.parse::<IdentityCode>().is_err());
    }

    #[test]
    fn generated_codes_differ() {
        let rng = SystemRandom::new();
        let a = IdentityCode::generate(&rng).unwrap();
        let b = IdentityCode::generate(&rng).unwrap();
        assert_ne!(a, b);
    }
}
