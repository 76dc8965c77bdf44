//! Q.931 messages as H.225.0 (§7) uses them: protocol discriminator 0x08, a
//! 2-byte call reference whose top bit is the flag (set in messages sent by
//! the side that did not originate the call reference), the message type and
//! the information elements roamgate reads and writes:
//!
//! | IE                    | id   | contents                                        |
//! |-----------------------|------|-------------------------------------------------|
//! | Bearer capability     | 0x04 | kept as bytes (SETUP: ITU speech, 64 kbit/s, µ-law) |
//! | Cause                 | 0x08 | Q.850 cause value (location "user")             |
//! | Display               | 0x28 | IA5 characters                                  |
//! | Called party number   | 0x70 | E.164 digits (type unknown, plan ISDN/E.164)    |
//! | User-user             | 0x7e | 2-byte length (H.225.0 §7.2.2.1), protocol discriminator 0x05, then the PER H323-UserInformation |
//!
//! Other variable-length IEs are skipped, single-octet IEs (top bit set) too.
//! Parsing never panics; every failure is a typed [`Error`].

use super::Error;

/// Q.931 protocol discriminator.
pub const PROTOCOL_DISCRIMINATOR: u8 = 0x08;
/// The user-user protocol discriminator of H.225.0: "X.208 and X.209 coded
/// user information".
pub const USER_USER_DISCRIMINATOR: u8 = 0x05;

/// Information element identifiers.
pub mod ie {
    pub const BEARER_CAPABILITY: u8 = 0x04;
    pub const CAUSE: u8 = 0x08;
    pub const DISPLAY: u8 = 0x28;
    pub const CALLED_PARTY_NUMBER: u8 = 0x70;
    pub const USER_USER: u8 = 0x7e;
}

/// The bearer capability H.323 endpoints send for a voice call: ITU-T
/// coding, speech; circuit mode, 64 kbit/s; layer 1 G.711 µ-law.
pub const BEARER_SPEECH_ULAW: [u8; 3] = [0x80, 0x90, 0xa2];

/// A character of a dialled number: a digit, `#`, `*` or `,` (the
/// dialledDigits alphabet of H.225.0; E.164 numbers are digits only).
pub const fn is_dialled_digit(c: &u8) -> bool {
    matches!(*c, b'0'..=b'9' | b'#' | b'*' | b',')
}

/// The Q.931 message types roamgate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Alerting,
    CallProceeding,
    Setup,
    Connect,
    ReleaseComplete,
}

impl MessageType {
    pub const fn code(self) -> u8 {
        match self {
            Self::Alerting => 0x01,
            Self::CallProceeding => 0x02,
            Self::Setup => 0x05,
            Self::Connect => 0x07,
            Self::ReleaseComplete => 0x5a,
        }
    }

    pub const fn from_code(code: u8) -> Result<Self, Error> {
        Ok(match code {
            0x01 => Self::Alerting,
            0x02 => Self::CallProceeding,
            0x05 => Self::Setup,
            0x07 => Self::Connect,
            0x5a => Self::ReleaseComplete,
            c => return Err(Error::UnknownMessageType(c)),
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Alerting => "ALERTING",
            Self::CallProceeding => "CALL PROCEEDING",
            Self::Setup => "SETUP",
            Self::Connect => "CONNECT",
            Self::ReleaseComplete => "RELEASE COMPLETE",
        }
    }
}

/// One Q.931 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    /// The 15-bit call reference value.
    pub call_reference: u16,
    /// The call reference flag: set in messages from the side the call
    /// reference was not allocated by (the callee).
    pub from_destination: bool,
    pub message_type: MessageType,
    pub bearer_capability: Option<Vec<u8>>,
    /// Q.850 cause value (7 bits).
    pub cause: Option<u8>,
    pub display: Option<String>,
    /// E.164 digits.
    pub called_party_number: Option<String>,
    /// The user-user contents after the protocol discriminator: the PER
    /// H323-UserInformation.
    pub user_user: Option<Vec<u8>>,
}

fn ia5(id: u8, b: &[u8]) -> Result<String, Error> {
    if b.iter().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        Ok(b.iter().map(|&c| char::from(c)).collect())
    } else {
        Err(Error::MalformedIe(id))
    }
}

impl Repr {
    /// Parses a Q.931 message (the TPKT payload).
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        if b.len() < 2 {
            return Err(Error::Truncated);
        }
        if b[0] != PROTOCOL_DISCRIMINATOR {
            return Err(Error::ProtocolDiscriminator(b[0]));
        }
        if b[1] != 2 {
            return Err(Error::CallReferenceLength(b[1]));
        }
        let Some(&[cr0, cr1, mt]) = b.get(2..5) else {
            return Err(Error::Truncated);
        };
        let message_type = MessageType::from_code(mt)?;
        let mut r = Self {
            call_reference: u16::from_be_bytes([cr0 & 0x7f, cr1]),
            from_destination: cr0 & 0x80 != 0,
            message_type,
            bearer_capability: None,
            cause: None,
            display: None,
            called_party_number: None,
            user_user: None,
        };
        let mut rest = &b[5..];
        while let Some((&id, after)) = rest.split_first() {
            if id & 0x80 != 0 {
                // Single-octet information element.
                rest = after;
                continue;
            }
            let (len, after) = if id == ie::USER_USER {
                match after {
                    [h, l, tail @ ..] => (usize::from(u16::from_be_bytes([*h, *l])), tail),
                    _ => return Err(Error::Truncated),
                }
            } else {
                match after.split_first() {
                    Some((&l, tail)) => (usize::from(l), tail),
                    None => return Err(Error::Truncated),
                }
            };
            let Some(body) = after.get(..len) else {
                return Err(Error::Truncated);
            };
            rest = &after[len..];
            match id {
                ie::BEARER_CAPABILITY => r.bearer_capability = Some(body.to_vec()),
                ie::CAUSE => {
                    // Octet 3 (coding, location), optional octet 3a when
                    // octet 3's extension bit is 0, then the cause value.
                    let i = match body.first() {
                        Some(o3) if o3 & 0x80 != 0 => 1,
                        Some(_) => 2,
                        None => return Err(Error::MalformedIe(id)),
                    };
                    let Some(v) = body.get(i) else {
                        return Err(Error::MalformedIe(id));
                    };
                    r.cause = Some(v & 0x7f);
                }
                ie::DISPLAY => r.display = Some(ia5(id, body)?),
                ie::CALLED_PARTY_NUMBER => {
                    // Octet 3: type of number and numbering plan (octet 3
                    // only, extension bit set), then IA5 digits.
                    let Some((o3, digits)) = body.split_first() else {
                        return Err(Error::MalformedIe(id));
                    };
                    if o3 & 0x80 == 0 || !digits.iter().all(is_dialled_digit) {
                        return Err(Error::MalformedIe(id));
                    }
                    r.called_party_number = Some(ia5(id, digits)?);
                }
                ie::USER_USER => {
                    let Some((&pd, uu)) = body.split_first() else {
                        return Err(Error::MalformedIe(id));
                    };
                    if pd != USER_USER_DISCRIMINATOR {
                        return Err(Error::UserUserDiscriminator(pd));
                    }
                    r.user_user = Some(uu.to_vec());
                }
                _ => {}
            }
        }
        Ok(r)
    }

    /// Appends the message to `out`, the IEs in ascending order of their
    /// identifiers (Q.931 §4.5.1).
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        fn short(out: &mut Vec<u8>, id: u8, parts: &[&[u8]]) -> Result<(), Error> {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            let len = u8::try_from(len).map_err(|_| Error::IeTooLong(id))?;
            out.push(id);
            out.push(len);
            for p in parts {
                out.extend_from_slice(p);
            }
            Ok(())
        }
        out.push(PROTOCOL_DISCRIMINATOR);
        out.push(2);
        let mut cr = (self.call_reference & 0x7fff).to_be_bytes();
        if self.from_destination {
            cr[0] |= 0x80;
        }
        out.extend_from_slice(&cr);
        out.push(self.message_type.code());
        if let Some(b) = &self.bearer_capability {
            short(out, ie::BEARER_CAPABILITY, &[b])?;
        }
        if let Some(c) = self.cause {
            if c > 0x7f {
                return Err(Error::InvalidField("cause"));
            }
            short(out, ie::CAUSE, &[&[0x80, 0x80 | c]])?;
        }
        if let Some(d) = &self.display {
            if !d.bytes().all(|c| c.is_ascii() && !c.is_ascii_control()) {
                return Err(Error::InvalidField("display"));
            }
            short(out, ie::DISPLAY, &[d.as_bytes()])?;
        }
        if let Some(n) = &self.called_party_number {
            if n.is_empty() || !n.bytes().all(|c| is_dialled_digit(&c)) {
                return Err(Error::InvalidField("called party number"));
            }
            short(out, ie::CALLED_PARTY_NUMBER, &[&[0x81], n.as_bytes()])?;
        }
        if let Some(uu) = &self.user_user {
            let len = u16::try_from(uu.len() + 1).map_err(|_| Error::IeTooLong(ie::USER_USER))?;
            out.push(ie::USER_USER);
            out.extend_from_slice(&len.to_be_bytes());
            out.push(USER_USER_DISCRIMINATOR);
            out.extend_from_slice(uu);
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.emit(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RELEASE COMPLETE from the callee, call reference 0x1234, cause 17
    // (user busy), user-user with 3 bytes of PER.
    static RELEASE: [u8; 15] = [
        0x08, 0x02, 0x92, 0x34, 0x5a, // header, flag set
        0x08, 0x02, 0x80, 0x91, // cause 17
        0x7e, 0x00, 0x03, 0x05, 0xaa, 0xbb, // user-user
    ];

    fn release() -> Repr {
        Repr {
            call_reference: 0x1234,
            from_destination: true,
            message_type: MessageType::ReleaseComplete,
            bearer_capability: None,
            cause: Some(17),
            display: None,
            called_party_number: None,
            user_user: Some(vec![0xaa, 0xbb]),
        }
    }

    #[test]
    fn parse() {
        assert_eq!(Repr::parse(&RELEASE).unwrap(), release());
        assert_eq!(Repr::parse(&RELEASE[..14]), Err(Error::Truncated));
    }

    #[test]
    fn emit() {
        assert_eq!(release().to_bytes().unwrap(), RELEASE);
    }

    #[test]
    fn setup_round_trip() {
        let r = Repr {
            call_reference: 7,
            from_destination: false,
            message_type: MessageType::Setup,
            bearer_capability: Some(BEARER_SPEECH_ULAW.to_vec()),
            cause: None,
            display: Some("unit 4401".into()),
            called_party_number: Some("4402".into()),
            user_user: Some(vec![1, 2, 3]),
        };
        let b = r.to_bytes().unwrap();
        assert_eq!(
            b[..],
            [
                0x08, 0x02, 0x00, 0x07, 0x05, 0x04, 0x03, 0x80, 0x90, 0xa2, 0x28, 0x09, b'u', b'n',
                b'i', b't', b' ', b'4', b'4', b'0', b'1', 0x70, 0x05, 0x81, b'4', b'4', b'0', b'2',
                0x7e, 0x00, 0x04, 0x05, 1, 2, 3
            ]
        );
        assert_eq!(Repr::parse(&b).unwrap(), r);
    }

    #[test]
    fn errors() {
        assert_eq!(Repr::parse(&[0x08]), Err(Error::Truncated));
        assert_eq!(
            Repr::parse(&[0x09, 2, 0, 1, 5]),
            Err(Error::ProtocolDiscriminator(9))
        );
        assert_eq!(
            Repr::parse(&[0x08, 1, 0, 5]),
            Err(Error::CallReferenceLength(1))
        );
        assert_eq!(
            Repr::parse(&[0x08, 2, 0, 1, 0x62]),
            Err(Error::UnknownMessageType(0x62))
        );
        assert_eq!(
            Repr::parse(&[0x08, 2, 0, 1, 5, 0x70, 2, 0x81, b'x']),
            Err(Error::MalformedIe(0x70))
        );
        assert_eq!(
            Repr::parse(&[0x08, 2, 0, 1, 5, 0x7e, 0, 2, 0x04, 0]),
            Err(Error::UserUserDiscriminator(4))
        );
        assert_eq!(
            Repr::parse(&[0x08, 2, 0, 1, 5, 0x7e, 0]),
            Err(Error::Truncated)
        );
        // Unknown IEs and single-octet IEs are skipped.
        let r = Repr::parse(&[0x08, 2, 0, 1, 5, 0xa1, 0x1e, 2, 0x80, 0x88]).unwrap();
        assert_eq!(r.message_type, MessageType::Setup);
    }
}
