//! Messages shared by the tests.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};

use roamgate_call::wire::{CallMessage, Channel, Codec, MessageBody, ReleaseReason, TokenFields};

pub const CALL_ID: [u8; 16] = *b"roamgate-call-id";
pub const CONF_ID: [u8; 16] = *b"roamgate-conf-id";
pub const CALLER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
pub const CALLEE: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);
pub const KEY: &[u8] = b"a key from the AP exchange subkeys";

pub fn channel(codec: Codec, n: u16, ip: Ipv4Addr, port: u16) -> Channel {
    Channel {
        logical_channel: n,
        codec,
        frames_per_packet: 20,
        session_id: 1,
        media: Some(SocketAddrV4::new(ip, port)),
        media_control: Some(SocketAddrV4::new(ip, port + 1)),
    }
}

pub fn msg(body: MessageBody, from_destination: bool) -> CallMessage {
    CallMessage {
        call_reference: 0x1234,
        from_destination,
        call_identifier: CALL_ID,
        display: None,
        kerberos: None,
        integrity: None,
        body,
    }
}

pub fn setup() -> CallMessage {
    let mut m = msg(
        MessageBody::Setup {
            conference_id: CONF_ID,
            calling_number: Some("4401".into()),
            called_number: "4402".into(),
            fast_start: vec![
                channel(Codec::G711Ulaw, 1, CALLER, 40000),
                channel(Codec::G711Alaw, 2, CALLER, 40000),
            ],
        },
        false,
    );
    m.display = Some("unit 4401".into());
    m
}

/// The five messages of a call, in order.
pub fn call() -> Vec<CallMessage> {
    vec![
        setup().with_kerberos_token(&[0x6e, 0x82, 0x01, 0x00, 1, 2, 3, 4]),
        msg(MessageBody::CallProceeding, true),
        msg(MessageBody::Alerting, true),
        msg(
            MessageBody::Connect {
                conference_id: CONF_ID,
                fast_start: vec![channel(Codec::G711Ulaw, 1, CALLEE, 50000)],
            },
            true,
        )
        .with_kerberos_token(&[0x6f, 0x30, 1, 2]),
        msg(
            MessageBody::ReleaseComplete {
                cause: Some(16),
                reason: Some(ReleaseReason::UndefinedReason),
            },
            false,
        ),
    ]
}

pub fn fields(seq: u32, sender: &str, receiver: &str) -> TokenFields {
    TokenFields {
        timestamp: 1_800_000_000 + seq,
        random: seq,
        general_id: receiver.into(),
        senders_id: sender.into(),
    }
}
