//! CallMessage: round trips of every message, the SETUP byte fixture, the
//! typed errors, and the H.235 hashed token.

mod common;

use roamgate_call::wire::{
    h235, tpkt, CallMessage, Error, MessageBody, ReleaseReason, MAX_MESSAGE_LEN,
};

/// The signed SETUP of `common::call()` (token fields `fields(1, "4401",
/// "4402")`, key `common::KEY`), as tshark decodes it: TPKT, Q.931 SETUP with
/// bearer capability, display, called party number 4402 and user-user; the
/// H.225.0 setup with dialledDigits 4401 -> 4402, the Kerberos ClearToken,
/// the cryptoHashedToken and two fastStart OpenLogicalChannels (g711Ulaw64k
/// then g711Alaw64k, 20 frames, RTP 10.1.0.10:40000, RTCP :40001).
const SETUP_HEX: &str = concat!(
    "0300010c080212340504038090a22809756e6974203434303170058134343032",
    "7e00e90520b0060008914a000401018077340200010180773500726f616d6761",
    "74652d636f6e662d696400597d801100726f616d676174652d63616c6c2d6964",
    "20010080092a864886f712010202092a864886f712010202086e820100010203",
    "04460174070008816b000201c500070008816b000205c06b49d2000101060034",
    "003400300032028009060034003400300031070008816b0002060060058dfa34",
    "6719c53bfd4fa1dc37021a0000000c601380121d0001000a01000a9c40000a01",
    "000a9c41001a0000010c201380121d0001000a01000a9c40000a01000a9c4100",
    "010001000100010002800100",
);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn signed_setup() -> CallMessage {
    let mut m = common::call().remove(0);
    let bytes = h235::sign(&m, &common::fields(1, "4401", "4402"), common::KEY).unwrap();
    m.integrity = CallMessage::parse(&bytes).unwrap().integrity;
    m
}

#[test]
fn setup_construct() {
    let m = common::call().remove(0);
    let bytes = h235::sign(&m, &common::fields(1, "4401", "4402"), common::KEY).unwrap();
    assert_eq!(bytes, unhex(SETUP_HEX));
    assert_eq!(signed_setup().to_bytes().unwrap(), unhex(SETUP_HEX));
}

#[test]
fn setup_parse() {
    let m = CallMessage::parse(&unhex(SETUP_HEX)).unwrap();
    assert_eq!(m, signed_setup());
    assert_eq!(m.call_reference, 0x1234);
    assert!(!m.from_destination);
    assert_eq!(m.display.as_deref(), Some("unit 4401"));
    assert_eq!(
        m.kerberos_token(),
        Some(&[0x6e, 0x82, 0x01, 0x00, 1, 2, 3, 4][..])
    );
    let MessageBody::Setup {
        called_number,
        calling_number,
        fast_start,
        conference_id,
    } = &m.body
    else {
        panic!("not a SETUP: {m:?}");
    };
    assert_eq!(called_number, "4402");
    assert_eq!(calling_number.as_deref(), Some("4401"));
    assert_eq!(conference_id, &common::CONF_ID);
    assert_eq!(fast_start.len(), 2);
    assert_eq!(fast_start[0].codec, roamgate_call::wire::Codec::G711Ulaw);
    assert_eq!(fast_start[1].codec, roamgate_call::wire::Codec::G711Alaw);
    assert_eq!(fast_start[0].frames_per_packet, 20);
    assert_eq!(
        fast_start[0].media,
        Some(std::net::SocketAddrV4::new(common::CALLER, 40000))
    );
    assert_eq!(
        fast_start[0].media_control,
        Some(std::net::SocketAddrV4::new(common::CALLER, 40001))
    );
    let f = h235::verify(&unhex(SETUP_HEX), common::KEY).unwrap();
    assert_eq!(f, common::fields(1, "4401", "4402"));
}

#[test]
fn every_message_round_trips() {
    let mut all = common::call();
    for reason in [
        ReleaseReason::UnreachableDestination,
        ReleaseReason::DestinationRejection,
        ReleaseReason::NoPermission,
        ReleaseReason::InConf,
        ReleaseReason::SecurityDenied,
        ReleaseReason::CalledPartyNotRegistered,
        ReleaseReason::SecurityIntegrityFailed,
        ReleaseReason::SecurityReplay,
        ReleaseReason::SecurityWrongSyncTime,
    ] {
        all.push(common::msg(
            MessageBody::ReleaseComplete {
                cause: Some(21),
                reason: Some(reason),
            },
            true,
        ));
    }
    all.push(common::msg(
        MessageBody::ReleaseComplete {
            cause: None,
            reason: None,
        },
        true,
    ));
    for m in all {
        let bytes = m.to_bytes().unwrap();
        assert_eq!(CallMessage::parse(&bytes).unwrap(), m, "unsigned {m:?}");
        let bytes = h235::sign(&m, &common::fields(7, "a", "b"), common::KEY).unwrap();
        let (back, fields) = h235::verify_message(&bytes, common::KEY).unwrap();
        assert_eq!(fields, common::fields(7, "a", "b"));
        let mut unsigned = back.clone();
        unsigned.integrity = None;
        assert_eq!(unsigned, m);
        assert_eq!(back.to_bytes().unwrap(), bytes);
    }
}

#[test]
fn truncated() {
    let b = unhex(SETUP_HEX);
    for n in 0..b.len() {
        assert!(CallMessage::parse(&b[..n]).is_err(), "prefix of {n} bytes");
    }
    assert_eq!(CallMessage::parse(&b[..3]), Err(Error::Truncated));
    assert_eq!(CallMessage::parse(&b[..100]), Err(Error::Truncated));
    // A TPKT that says so but whose Q.931 user-user is cut short.
    let mut short = b[..200].to_vec();
    short[2..4].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(CallMessage::parse(&short), Err(Error::Truncated));
}

#[test]
fn oversized() {
    let big = common::setup().with_kerberos_token(&vec![0x30; MAX_MESSAGE_LEN]);
    assert!(matches!(big.to_bytes(), Err(Error::Oversized(_))));
    let mut b = vec![3, 0, 0x10, 0x01];
    b.resize(0x1001, 0);
    assert_eq!(CallMessage::parse(&b), Err(Error::Oversized(0x1001)));
    assert_eq!(
        tpkt::frame_len(&[3, 0, 0xff, 0xff]),
        Err(Error::Oversized(0xffff))
    );
}

#[test]
fn wrong_tpkt_version() {
    let mut b = unhex(SETUP_HEX);
    b[0] = 4;
    assert_eq!(CallMessage::parse(&b), Err(Error::TpktVersion(4)));
}

#[test]
fn unknown_message_type() {
    let mut b = unhex(SETUP_HEX);
    // TPKT(4) | 0x08 | 0x02 | call reference(2) | message type
    b[8] = 0x7b;
    assert_eq!(CallMessage::parse(&b), Err(Error::UnknownMessageType(0x7b)));
}

#[test]
fn body_must_match_message_type() {
    let mut b = unhex(SETUP_HEX);
    b[8] = 0x07; // CONNECT carrying a setup body
    assert_eq!(
        CallMessage::parse(&b),
        Err(Error::BodyMismatch {
            q931: "CONNECT",
            body: "setup"
        })
    );
}

#[test]
fn missing_user_user() {
    let q = roamgate_call::wire::q931::Repr {
        call_reference: 1,
        from_destination: false,
        message_type: roamgate_call::wire::q931::MessageType::Alerting,
        bearer_capability: None,
        cause: None,
        display: None,
        called_party_number: None,
        user_user: None,
    };
    let b = tpkt::emit(&q.to_bytes().unwrap()).unwrap();
    assert_eq!(CallMessage::parse(&b), Err(Error::MissingUserUser));
    let mut q = q;
    q.user_user = Some(vec![0xff, 0xff]);
    let b = tpkt::emit(&q.to_bytes().unwrap()).unwrap();
    assert!(matches!(CallMessage::parse(&b), Err(Error::Decode(_))));
}

#[test]
fn invalid_fields_are_refused_on_encode() {
    let mut m = common::setup();
    if let MessageBody::Setup { called_number, .. } = &mut m.body {
        *called_number = "44x2".into();
    }
    assert!(matches!(m.to_bytes(), Err(Error::InvalidField(_))));
    let mut m = common::setup();
    m.call_reference = 0x8000;
    assert_eq!(m.to_bytes(), Err(Error::InvalidField("call reference")));
    let m = common::setup();
    let mut f = common::fields(1, "a", "b");
    f.timestamp = 0;
    assert!(matches!(
        h235::sign(&m, &f, common::KEY),
        Err(Error::InvalidField(_))
    ));
}

#[test]
fn hashed_token_wrong_key() {
    assert_eq!(
        h235::verify(&unhex(SETUP_HEX), b"another key"),
        Err(Error::IntegrityFailed)
    );
}

#[test]
fn hashed_token_covers_every_byte() {
    let b = unhex(SETUP_HEX);
    for i in 0..b.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = b.clone();
            t[i] ^= bit;
            assert!(
                h235::verify(&t, common::KEY).is_err(),
                "flipping bit {bit:#04x} of byte {i} went unnoticed"
            );
        }
    }
}

#[test]
fn hashed_token_tampered_number() {
    let b = unhex(SETUP_HEX);
    // The called party number IE's last digit: '2' -> '3'.
    let pos = b.windows(5).position(|w| w == b"\x814402").unwrap() + 4;
    let mut t = b.clone();
    t[pos] = b'3';
    // The Q.931 number no longer matches the H.225.0 destinationAddress.
    assert_eq!(
        h235::verify(&t, common::KEY),
        Err(Error::InvalidField("called party number"))
    );
    // Both changed: the hash catches it.
    let m = CallMessage::parse(&b).unwrap();
    let mut forged = m.clone();
    if let MessageBody::Setup { called_number, .. } = &mut forged.body {
        *called_number = "4403".into();
    }
    let t = forged.to_bytes().unwrap();
    assert_eq!(t.len(), b.len());
    assert_eq!(h235::verify(&t, common::KEY), Err(Error::IntegrityFailed));
}

#[test]
fn hashed_token_missing() {
    let b = common::setup().to_bytes().unwrap();
    assert_eq!(h235::verify(&b, common::KEY), Err(Error::NoIntegrityToken));
}

#[test]
fn kerberos_token_accessors() {
    let m = common::setup();
    assert_eq!(m.kerberos_token(), None);
    let m = m.with_kerberos_token(b"\x6e\x03ap!");
    assert_eq!(m.kerberos_token(), Some(&b"\x6e\x03ap!"[..]));
    let back = CallMessage::parse(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(back.kerberos_token(), Some(&b"\x6e\x03ap!"[..]));
}

/// Found by fuzz/call_message: a RELEASE COMPLETE whose reason
/// (noBandwidth) roamgate has no name for, and odd BMP identifiers, parse
/// to a message that re-encodes to the same message.
#[test]
fn unnamed_release_reason_round_trips() {
    let b = unhex(concat!(
        "03000084080281015a180280957e00740525c0060008914a00048b0168054011",
        "0066757a7a2d63616c6c2d6964656e742e4e0174070008816b000201c5080700",
        "08816b000205c06b49d1ff01060a00630061df6c006c0065006502800d0a0063",
        "006165006c6c00000072070008816b000206006089469a8e1e383c80282ac951",
        "02800100",
    ));
    let m = CallMessage::parse(&b).unwrap();
    assert!(matches!(
        m.body,
        MessageBody::ReleaseComplete {
            reason: Some(ReleaseReason::Other(_)),
            ..
        }
    ));
    let again = m.to_bytes().unwrap();
    assert_eq!(CallMessage::parse(&again).unwrap(), m);
}

/// Found by fuzz/call_message: a SETUP whose calling number has a `*` (the
/// dialledDigits alphabet is "0123456789#*,") re-encodes.
#[test]
fn dialled_digits_alphabet_round_trips() {
    let b = unhex(concat!(
        "03000106080201010504038090a2780581343430327e00ee0520b0060008914a",
        "00040101807732020001018077351066757a7a2d636f6e666572656e63652e00",
        "597d80110066757a7a2d63616c6c2d6964656e742e1d010080092a867100f712",
        "010202092a864886f712010202056e030102034e0174070008816b000201c500",
        "070008816b000205c06b49d1ff01010a00630061006c006c0065006502800d0a",
        "00630061006c006c00650072070008816b000206006043054e3a10d0bd42317b",
        "636537021a0000000c601380121d0001000a01000a9c40000a01000a9c41001a",
        "0000010c201380121d0001000a01000a9c40000a01000a9c4100010001000100",
        "010002800100",
    ));
    let m = CallMessage::parse(&b).unwrap();
    let again = m.to_bytes().unwrap();
    assert_eq!(CallMessage::parse(&again).unwrap(), m);
}
