//! Wire tests: static fixtures, deconstruct / construct / parse / emit, and
//! every truncation and overflow beside them.

use super::*;

const CODE: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

/// A switch-on with a 3-byte "AP-REQ" and a 2-byte "KRB-CRED" (the wire
/// layer does not look inside them).
static SWITCH_ON: [u8; 37] = [
    0x01, 0x01, 0x00, 0x00, // version 1, type 1, reserved
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, // identity code
    0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, //
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // nonce
    0x00, 0x03, 0x00, 0x02, // AP-REQ length 3, KRB-CRED length 2
    0x6e, 0x01, 0x00, // AP-REQ
    0x76, 0x00, // KRB-CRED
];

static REFUSED: [u8; 32] = [
    0x01, 0x03, 0x00, 0x00, // version 1, type 3
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, //
    0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, //
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, //
    0x01, 0x0b, 0x00, 0x1e, // refused switch-on, cause Busy, retry after 30 s
];

fn identity() -> IdentityCode {
    IdentityCode::from_bytes(CODE)
}

fn switch_on_repr() -> Repr<'static> {
    Repr::SwitchOn {
        identity: identity(),
        nonce: 0x0102_0304_0506_0708,
        ap_req: &[0x6e, 0x01, 0x00],
        krb_cred: &[0x76, 0x00],
    }
}

#[test]
fn test_deconstruct() {
    let f = Frame::new_checked(&SWITCH_ON[..]).unwrap();
    assert_eq!(f.version(), 1);
    assert_eq!(f.msg_type(), Ok(MessageType::SwitchOn));
    assert_eq!(f.identity(), identity());
    assert_eq!(f.nonce(), 0x0102_0304_0506_0708);
    assert_eq!(f.first(), &[0x6e, 0x01, 0x00]);
    assert_eq!(f.second(), &[0x76, 0x00]);
    assert_eq!(f.bound_part(), &SWITCH_ON[..28]);
    let r = Frame::new_checked(&REFUSED[..]).unwrap();
    assert_eq!(r.refused_type(), 1);
    assert_eq!(r.cause(), Cause::Busy);
    assert_eq!(r.retry_after(), 30);
    assert!(r.first().is_empty() && r.second().is_empty());
}

#[test]
fn test_construct() {
    let mut buf = [0xa5u8; 37];
    switch_on_repr()
        .emit(&mut Frame::new_unchecked(&mut buf[..]))
        .unwrap();
    assert_eq!(buf, SWITCH_ON);
}

#[test]
fn test_parse() {
    assert_eq!(Repr::parse_bytes(&SWITCH_ON).unwrap(), switch_on_repr());
    assert_eq!(
        Repr::parse_bytes(&REFUSED).unwrap(),
        Repr::Refused {
            identity: identity(),
            nonce: 0x0102_0304_0506_0708,
            refused: MessageType::SwitchOn as u8,
            cause: Cause::Busy,
            retry_after: 30,
        }
    );
}

#[test]
fn test_emit() {
    let r = Repr::parse_bytes(&REFUSED).unwrap();
    assert_eq!(r.buffer_len(), 32);
    assert_eq!(r.to_bytes().unwrap(), REFUSED);
    assert_eq!(switch_on_repr().to_bytes().unwrap(), SWITCH_ON);
}

#[test]
fn bound_part_is_the_frames_first_28_bytes() {
    assert_eq!(
        bound_part(MessageType::SwitchOn, &identity(), 0x0102_0304_0506_0708),
        SWITCH_ON[..28]
    );
}

#[test]
fn every_type_round_trips() {
    let id = identity();
    let reprs = [
        switch_on_repr(),
        Repr::SwitchOnAck {
            identity: id,
            nonce: 1,
            ap_rep: b"rep",
        },
        Repr::SwitchOff {
            identity: id,
            nonce: 2,
            ap_req: b"req",
        },
        Repr::SwitchOffAck {
            identity: id,
            nonce: 3,
            ap_rep: b"rep",
        },
        Repr::StatusRequest {
            identity: id,
            nonce: 4,
            ap_req: b"req",
        },
        Repr::StatusAnswer {
            identity: id,
            nonce: 5,
            ap_rep: b"rep",
            krb_priv: b"priv",
        },
        Repr::ProxyRequest {
            identity: id,
            nonce: 7,
            ap_req: b"req",
            krb_priv: b"priv",
        },
        Repr::ProxyAnswer {
            identity: id,
            nonce: 8,
            ap_rep: b"rep",
            krb_priv: b"priv",
        },
        Repr::Refused {
            identity: id,
            nonce: 6,
            refused: 4,
            cause: Cause::Other(200),
            retry_after: 0,
        },
    ];
    for r in reprs {
        let bytes = r.to_bytes().unwrap();
        assert_eq!(Repr::parse_bytes(&bytes).unwrap(), r, "{r:?}");
        assert_eq!(r.msg_type().is_request(), !r.msg_type().is_answer());
    }
}

#[test]
fn truncated_frames_are_refused() {
    for n in 0..FIXED_LEN {
        assert_eq!(
            Frame::new_checked(&SWITCH_ON[..n]).unwrap_err(),
            WireError::Truncated {
                len: n,
                need: FIXED_LEN
            }
        );
    }
    for n in FIXED_LEN..SWITCH_ON.len() {
        assert_eq!(
            Repr::parse_bytes(&SWITCH_ON[..n]).unwrap_err(),
            WireError::LengthMismatch {
                declared: 37,
                len: n
            }
        );
    }
}

#[test]
fn oversized_and_padded_frames_are_refused() {
    let mut big = SWITCH_ON.to_vec();
    big.resize(MAX_FRAME_LEN + 1, 0);
    assert_eq!(
        Frame::new_checked(&big[..]).unwrap_err(),
        WireError::Oversized(MAX_FRAME_LEN + 1)
    );
    let mut padded = SWITCH_ON.to_vec();
    padded.push(0);
    assert!(matches!(
        Repr::parse_bytes(&padded),
        Err(WireError::LengthMismatch { .. })
    ));
    let mut refused = REFUSED.to_vec();
    refused.push(0);
    assert!(matches!(
        Repr::parse_bytes(&refused),
        Err(WireError::LengthMismatch { .. })
    ));
    // Too large to build, too.
    let huge = vec![0u8; MAX_FRAME_LEN];
    let r = Repr::SwitchOn {
        identity: identity(),
        nonce: 0,
        ap_req: &huge,
        krb_cred: b"x",
    };
    assert!(matches!(r.to_bytes(), Err(WireError::Oversized(_))));
}

#[test]
fn bad_version_type_and_parts_are_refused() {
    let mut f = SWITCH_ON;
    f[0] = 2;
    assert_eq!(Repr::parse_bytes(&f).unwrap_err(), WireError::BadVersion(2));
    let mut f = SWITCH_ON;
    f[1] = 10;
    assert_eq!(
        Repr::parse_bytes(&f).unwrap_err(),
        WireError::UnknownType(10)
    );
    // A proxy request must carry its KRB-PRIV.
    let r = Repr::ProxyRequest {
        identity: identity(),
        nonce: 0,
        ap_req: b"req",
        krb_priv: b"",
    };
    assert!(matches!(
        r.to_bytes(),
        Err(WireError::MissingPart(
            MessageType::ProxyRequest,
            "KRB-PRIV"
        ))
    ));
    // A switch-on without a KRB-CRED.
    let r = Repr::SwitchOn {
        identity: identity(),
        nonce: 0,
        ap_req: b"req",
        krb_cred: b"",
    };
    assert_eq!(
        r.to_bytes().unwrap_err(),
        WireError::MissingPart(MessageType::SwitchOn, "KRB-CRED")
    );
    // A switch-off may not smuggle a second part.
    let mut f = SWITCH_ON;
    f[1] = MessageType::SwitchOff as u8;
    assert_eq!(
        Repr::parse_bytes(&f).unwrap_err(),
        WireError::UnexpectedPart(MessageType::SwitchOff, "second part")
    );
    // No AP-REQ at all.
    let mut f = REFUSED;
    f[1] = MessageType::SwitchOff as u8;
    f[28..32].fill(0);
    assert_eq!(
        Repr::parse_bytes(&f).unwrap_err(),
        WireError::MissingPart(MessageType::SwitchOff, "AP-REQ")
    );
    // A unit frame of type relay.
    let mut f = REFUSED;
    f[1] = 0x80;
    assert_eq!(Repr::parse_bytes(&f).unwrap_err(), WireError::NestedRelay);
}

fn relay_repr(inner: &[u8]) -> RelayRepr<'_> {
    RelayRepr {
        base_station: 7,
        domain: "HOME.TEST",
        unit: SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), 40000),
        inner,
    }
}

#[test]
fn relay_deconstruct_and_emit() {
    let bytes = relay_repr(&SWITCH_ON).to_bytes().unwrap();
    assert_eq!(
        &bytes[..RELAY_FIXED_LEN],
        &[
            0x01, 0x80, 0x00, 0x00, // version, relay, reserved
            0x00, 0x00, 0x00, 0x07, // base station 7
            10, 1, 0, 2, // unit address
            0x9c, 0x40, // unit port 40000
            9, 0, // domain length, reserved
        ]
    );
    assert_eq!(&bytes[RELAY_FIXED_LEN..RELAY_FIXED_LEN + 9], b"HOME.TEST");
    let f = RelayFrame::new_checked(&bytes[..]).unwrap();
    assert_eq!(f.base_station(), 7);
    assert_eq!(f.domain(), "HOME.TEST");
    assert_eq!(f.unit().port(), 40000);
    assert_eq!(f.inner(), &SWITCH_ON[..]);
    assert_eq!(
        RelayRepr::parse_bytes(&bytes).unwrap(),
        relay_repr(&SWITCH_ON)
    );
}

#[test]
fn relay_errors_are_typed() {
    let bytes = relay_repr(&SWITCH_ON).to_bytes().unwrap();
    for n in 0..bytes.len() {
        assert!(RelayRepr::parse_bytes(&bytes[..n]).is_err(), "{n}");
    }
    // The inner frame is checked in full.
    let mut bad = bytes.clone();
    bad[RELAY_FIXED_LEN + 9] = 3;
    assert_eq!(
        RelayRepr::parse_bytes(&bad).unwrap_err(),
        WireError::BadVersion(3)
    );
    let mut bad = bytes.clone();
    bad[field::DOMAIN_LEN] = 0;
    assert_eq!(
        RelayRepr::parse_bytes(&bad).unwrap_err(),
        WireError::BadDomain(0)
    );
    let mut bad = bytes.clone();
    bad[RELAY_FIXED_LEN] = b' ';
    assert_eq!(
        RelayRepr::parse_bytes(&bad).unwrap_err(),
        WireError::BadDomain(9)
    );
    // A relay inside a relay.
    let nested = relay_repr(&bytes);
    assert!(nested.to_bytes().is_err());
    // A unit frame is not a relay frame.
    assert_eq!(
        RelayRepr::parse_bytes(&SWITCH_ON).unwrap_err(),
        WireError::UnknownType(1)
    );
    let long = "D".repeat(MAX_DOMAIN_LEN + 1);
    let r = RelayRepr {
        domain: &long,
        ..relay_repr(&SWITCH_ON)
    };
    assert_eq!(
        r.to_bytes().unwrap_err(),
        WireError::BadDomain(MAX_DOMAIN_LEN + 1)
    );
}

#[test]
fn status_body_round_trips_and_refuses_junk() {
    let body = StatusBody {
        state: ProxyState::Attached,
        home_address: Ipv4Addr::new(10, 9, 0, 5),
        care_of: Ipv4Addr::new(192, 0, 2, 7),
        tgt_expiry: 1_800_036_000,
        registration_expiry: 1_800_000_600,
    };
    let b = body.to_bytes();
    assert_eq!(&b[..12], &[2, 0, 0, 0, 10, 9, 0, 5, 192, 0, 2, 7]);
    assert_eq!(StatusBody::parse(&b).unwrap(), body);
    assert_eq!(
        StatusBody::parse(&b[..27]).unwrap_err(),
        WireError::BadStatusBody(27)
    );
    let mut bad = b;
    bad[0] = 9;
    assert_eq!(
        StatusBody::parse(&bad).unwrap_err(),
        WireError::UnknownState(9)
    );
}

#[test]
fn junk_never_panics() {
    // Every short prefix and every single-byte change of the fixtures.
    for fixture in [&SWITCH_ON[..], &REFUSED[..]] {
        for i in 0..fixture.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut f = fixture.to_vec();
                f[i] = v;
                let _ = Repr::parse_bytes(&f);
                let _ = RelayRepr::parse_bytes(&f);
                let v = Frame::new_unchecked(&f[..]);
                if v.check_len().is_ok() {
                    let _ = (v.first(), v.second(), v.cause(), v.identity());
                }
            }
        }
    }
}

#[test]
fn nonzero_reserved_bytes_are_refused() {
    // Found by fuzz/fuzz_targets/attach_frame.rs: a refusal with reserved
    // bytes 08 00 parsed, and re-encoded with zeros.
    let mut f = REFUSED;
    f[2] = 0x08;
    assert_eq!(
        Repr::parse_bytes(&f).unwrap_err(),
        WireError::Reserved { offset: 2 }
    );
    let mut f = SWITCH_ON;
    f[3] = 1;
    assert_eq!(
        Repr::parse_bytes(&f).unwrap_err(),
        WireError::Reserved { offset: 2 }
    );
    let relay = relay_repr(&SWITCH_ON).to_bytes().unwrap();
    for offset in [2, 3, 15] {
        let mut r = relay.clone();
        r[offset] = 0x80;
        let want = if offset == 15 { 15 } else { 2 };
        assert_eq!(
            RelayRepr::parse_bytes(&r).unwrap_err(),
            WireError::Reserved { offset: want }
        );
    }
    let mut body = StatusBody {
        state: ProxyState::Starting,
        home_address: Ipv4Addr::UNSPECIFIED,
        care_of: Ipv4Addr::UNSPECIFIED,
        tgt_expiry: 0,
        registration_expiry: 0,
    }
    .to_bytes();
    body[3] = 1;
    assert_eq!(
        StatusBody::parse(&body).unwrap_err(),
        WireError::Reserved { offset: 1 }
    );
}
