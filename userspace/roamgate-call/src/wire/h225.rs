//! The H.225.0 call signalling subset (module H323-MESSAGES, H.225.0 v7
//! 12/2009) and [`CallMessage`], the plain representation of one whole
//! message: TPKT, Q.931 and the aligned PER H323-UserInformation in the
//! user-user information element.
//!
//! As in [`super::h245`], every root component and root alternative is
//! declared in schema order (unused ones with the [`Unused`] placeholder),
//! extensible types are `#[non_exhaustive]`, extension additions are
//! declared in order up to the last one roamgate sends, and size and value
//! constraints are the schema's, so that any standard decoder reads the
//! messages (the tshark test checks it).

use std::net::{Ipv4Addr, SocketAddrV4};

use rasn::prelude::*;

use super::h235::{self, ClearToken, CryptoToken, Integrity};
use super::h245::Unused;
pub use super::h245::{Channel, Codec};
use super::q931::{self, MessageType};
use super::{tpkt, Error};

/// protocolIdentifier: H.225.0 version 4, {itu-t(0) recommendation(0) h(8)
/// 2250 version(0) 4}.
pub const PROTOCOL_IDENTIFIER: &Oid = Oid::const_new(&[0, 0, 8, 2250, 0, 4]);

/// H323-UserInformation ::= SEQUENCE { h323-uu-pdu, user-data OPTIONAL, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct H323UserInformation {
    pub h323_uu_pdu: H323UuPdu,
    pub user_data: Option<Unused>,
}

/// H323-UU-PDU ::= SEQUENCE { h323-message-body, nonStandardData OPTIONAL,
/// ..., h4501SupplementaryService, h245Tunnelling, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct H323UuPdu {
    pub h323_message_body: H323MessageBody,
    pub non_standard_data: Option<Unused>,
    #[rasn(extension_addition)]
    pub h4501_supplementary_service: Option<Unused>,
    /// FALSE: roamgate does not tunnel H.245 (Fast Connect only).
    #[rasn(extension_addition)]
    pub h245_tunnelling: bool,
}

/// h323-message-body CHOICE { setup, callProceeding, connect, alerting,
/// information, releaseComplete, facility, ..., progress, empty, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum H323MessageBody {
    Setup(Box<SetupUuie>),
    CallProceeding(Box<CallProceedingUuie>),
    Connect(Box<ConnectUuie>),
    Alerting(Box<AlertingUuie>),
    Information(Unused),
    ReleaseComplete(Box<ReleaseCompleteUuie>),
    Facility(Unused),
}

/// Setup-UUIE, root and extension additions up to maintainConnection.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct SetupUuie {
    pub protocol_identifier: ObjectIdentifier,
    pub h245_address: Option<TransportAddress>,
    pub source_address: Option<SequenceOf<AliasAddress>>,
    pub source_info: EndpointType,
    pub destination_address: Option<SequenceOf<AliasAddress>>,
    pub dest_call_signal_address: Option<TransportAddress>,
    pub dest_extra_call_info: Option<Unused>,
    pub dest_extra_crv: Option<Unused>,
    pub active_mc: bool,
    pub conference_id: FixedOctetString<16>,
    pub conference_goal: ConferenceGoal,
    pub call_services: Option<Unused>,
    pub call_type: CallType,
    #[rasn(extension_addition)]
    pub source_call_signal_address: Option<TransportAddress>,
    #[rasn(extension_addition)]
    pub remote_extension_address: Option<Unused>,
    #[rasn(extension_addition)]
    pub call_identifier: CallIdentifier,
    #[rasn(extension_addition)]
    pub h245_security_capability: Option<Unused>,
    #[rasn(extension_addition)]
    pub tokens: Option<SequenceOf<ClearToken>>,
    #[rasn(extension_addition)]
    pub crypto_tokens: Option<SequenceOf<CryptoH323Token>>,
    #[rasn(extension_addition)]
    pub fast_start: Option<SequenceOf<OctetString>>,
    #[rasn(extension_addition)]
    pub media_wait_for_connect: bool,
    #[rasn(extension_addition)]
    pub can_overlap_send: bool,
    #[rasn(extension_addition)]
    pub endpoint_identifier: Option<Unused>,
    #[rasn(extension_addition)]
    pub multiple_calls: bool,
    #[rasn(extension_addition)]
    pub maintain_connection: bool,
}

/// CallProceeding-UUIE, extension additions up to maintainConnection.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct CallProceedingUuie {
    pub protocol_identifier: ObjectIdentifier,
    pub destination_info: EndpointType,
    pub h245_address: Option<TransportAddress>,
    #[rasn(extension_addition)]
    pub call_identifier: CallIdentifier,
    #[rasn(extension_addition)]
    pub h245_security_mode: Option<Unused>,
    #[rasn(extension_addition)]
    pub tokens: Option<SequenceOf<ClearToken>>,
    #[rasn(extension_addition)]
    pub crypto_tokens: Option<SequenceOf<CryptoH323Token>>,
    #[rasn(extension_addition)]
    pub fast_start: Option<SequenceOf<OctetString>>,
    #[rasn(extension_addition)]
    pub multiple_calls: bool,
    #[rasn(extension_addition)]
    pub maintain_connection: bool,
}

/// Alerting-UUIE, extension additions up to maintainConnection.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct AlertingUuie {
    pub protocol_identifier: ObjectIdentifier,
    pub destination_info: EndpointType,
    pub h245_address: Option<TransportAddress>,
    #[rasn(extension_addition)]
    pub call_identifier: CallIdentifier,
    #[rasn(extension_addition)]
    pub h245_security_mode: Option<Unused>,
    #[rasn(extension_addition)]
    pub tokens: Option<SequenceOf<ClearToken>>,
    #[rasn(extension_addition)]
    pub crypto_tokens: Option<SequenceOf<CryptoH323Token>>,
    #[rasn(extension_addition)]
    pub fast_start: Option<SequenceOf<OctetString>>,
    #[rasn(extension_addition)]
    pub multiple_calls: bool,
    #[rasn(extension_addition)]
    pub maintain_connection: bool,
}

/// Connect-UUIE, extension additions up to maintainConnection.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct ConnectUuie {
    pub protocol_identifier: ObjectIdentifier,
    pub h245_address: Option<TransportAddress>,
    pub destination_info: EndpointType,
    pub conference_id: FixedOctetString<16>,
    #[rasn(extension_addition)]
    pub call_identifier: CallIdentifier,
    #[rasn(extension_addition)]
    pub h245_security_mode: Option<Unused>,
    #[rasn(extension_addition)]
    pub tokens: Option<SequenceOf<ClearToken>>,
    #[rasn(extension_addition)]
    pub crypto_tokens: Option<SequenceOf<CryptoH323Token>>,
    #[rasn(extension_addition)]
    pub fast_start: Option<SequenceOf<OctetString>>,
    #[rasn(extension_addition)]
    pub multiple_calls: bool,
    #[rasn(extension_addition)]
    pub maintain_connection: bool,
}

/// ReleaseComplete-UUIE, extension additions up to cryptoTokens.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct ReleaseCompleteUuie {
    pub protocol_identifier: ObjectIdentifier,
    pub reason: Option<ReleaseCompleteReason>,
    #[rasn(extension_addition)]
    pub call_identifier: CallIdentifier,
    #[rasn(extension_addition)]
    pub tokens: Option<SequenceOf<ClearToken>>,
    #[rasn(extension_addition)]
    pub crypto_tokens: Option<SequenceOf<CryptoH323Token>>,
}

/// ReleaseCompleteReason: the 12 root alternatives, the extension additions
/// up to hopCountExceeded.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum ReleaseCompleteReason {
    NoBandwidth(()),
    GatekeeperResources(()),
    UnreachableDestination(()),
    DestinationRejection(()),
    InvalidRevision(()),
    NoPermission(()),
    UnreachableGatekeeper(()),
    GatewayResources(()),
    BadFormatAddress(()),
    AdaptiveBusy(()),
    InConf(()),
    UndefinedReason(()),
    #[rasn(extension_addition)]
    FacilityCallDeflection(()),
    #[rasn(extension_addition)]
    SecurityDenied(()),
    #[rasn(extension_addition)]
    CalledPartyNotRegistered(()),
    #[rasn(extension_addition)]
    CallerNotRegistered(()),
    #[rasn(extension_addition)]
    NewConnectionNeeded(()),
    #[rasn(extension_addition)]
    NonStandardReason(Unused),
    #[rasn(extension_addition)]
    ReplaceWithConferenceInvite(FixedOctetString<16>),
    #[rasn(extension_addition)]
    GenericDataReason(()),
    #[rasn(extension_addition)]
    NeededFeatureNotSupported(()),
    #[rasn(extension_addition)]
    TunnelledSignallingRejected(()),
    #[rasn(extension_addition)]
    InvalidCid(()),
    #[rasn(extension_addition)]
    SecurityError(SecurityErrors),
    #[rasn(extension_addition)]
    HopCountExceeded(()),
}

/// SecurityErrors ::= CHOICE { 16 NULL alternatives, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum SecurityErrors {
    SecurityWrongSyncTime(()),
    SecurityReplay(()),
    SecurityWrongGeneralId(()),
    SecurityWrongSendersId(()),
    SecurityIntegrityFailed(()),
    SecurityWrongOid(()),
    SecurityDhMismatch(()),
    SecurityCertificateExpired(()),
    SecurityCertificateDateInvalid(()),
    SecurityCertificateRevoked(()),
    SecurityCertificateNotReadable(()),
    SecurityCertificateSignatureInvalid(()),
    SecurityCertificateMissing(()),
    SecurityCertificateIncomplete(()),
    SecurityUnsupportedCertificateAlgOid(()),
    SecurityUnknownCa(()),
}

/// TransportAddress ::= CHOICE { ipAddress, ipSourceRoute, ipxAddress,
/// ip6Address, netBios, nsap, nonStandardAddress, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum TransportAddress {
    IpAddress(IpAddress),
    IpSourceRoute(Unused),
    IpxAddress(Unused),
    Ip6Address(Unused),
    NetBios(Unused),
    Nsap(Unused),
    NonStandardAddress(Unused),
}

/// ipAddress SEQUENCE { ip OCTET STRING (SIZE (4)), port INTEGER (0..65535) }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct IpAddress {
    pub ip: FixedOctetString<4>,
    pub port: u16,
}

impl From<SocketAddrV4> for TransportAddress {
    fn from(a: SocketAddrV4) -> Self {
        Self::IpAddress(IpAddress {
            ip: FixedOctetString::new(a.ip().octets()),
            port: a.port(),
        })
    }
}

impl TransportAddress {
    pub fn ipv4(&self) -> Option<SocketAddrV4> {
        match self {
            Self::IpAddress(a) => {
                let ip: [u8; 4] = *a.ip;
                Some(SocketAddrV4::new(Ipv4Addr::from(ip), a.port))
            }
            _ => None,
        }
    }
}

/// EndpointType ::= SEQUENCE { nonStandardData, vendor, gatekeeper,
/// gateway, mcu, terminal, mc BOOLEAN, undefinedNode BOOLEAN, ..., set,
/// supportedTunnelledProtocols }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct EndpointType {
    pub non_standard_data: Option<Unused>,
    pub vendor: Option<Unused>,
    pub gatekeeper: Option<Unused>,
    pub gateway: Option<Unused>,
    pub mcu: Option<Unused>,
    pub terminal: Option<TerminalInfo>,
    pub mc: bool,
    pub undefined_node: bool,
}

impl EndpointType {
    /// A terminal (roamgate's proxies act as H.323 terminals).
    pub fn terminal() -> Self {
        Self {
            non_standard_data: None,
            vendor: None,
            gatekeeper: None,
            gateway: None,
            mcu: None,
            terminal: Some(TerminalInfo {
                non_standard_data: None,
            }),
            mc: false,
            undefined_node: false,
        }
    }
}

/// TerminalInfo ::= SEQUENCE { nonStandardData OPTIONAL, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct TerminalInfo {
    pub non_standard_data: Option<Unused>,
}

/// AliasAddress ::= CHOICE { dialledDigits, h323-ID, ..., url-ID, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum AliasAddress {
    DialledDigits(DialledDigits),
    #[rasn(size("1..=256"))]
    H323Id(BmpString),
}

/// IA5String (SIZE (1..128)) (FROM ("0123456789#*,"))
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(delegate, from("0..=9", "#", "*", ","), size("1..=128"))]
pub struct DialledDigits(pub Ia5String);

/// conferenceGoal CHOICE { create, join, invite, ..., ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum ConferenceGoal {
    Create(()),
    Join(()),
    Invite(()),
}

/// CallType ::= CHOICE { pointToPoint, oneToN, nToOne, nToN, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum CallType {
    PointToPoint(()),
    OneToN(()),
    NToOne(()),
    NToN(()),
}

/// CallIdentifier ::= SEQUENCE { guid GloballyUniqueID, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct CallIdentifier {
    pub guid: FixedOctetString<16>,
}

/// CryptoH323Token ::= CHOICE { cryptoEPPwdHash, cryptoGKPwdHash,
/// cryptoEPPwdEncr, cryptoGKPwdEncr, cryptoEPCert, cryptoGKCert,
/// cryptoFastStart, nestedcryptoToken, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum CryptoH323Token {
    CryptoEpPwdHash(Unused),
    CryptoGkPwdHash(Unused),
    CryptoEpPwdEncr(Unused),
    CryptoGkPwdEncr(Unused),
    CryptoEpCert(Unused),
    CryptoGkCert(Unused),
    CryptoFastStart(Unused),
    NestedCryptoToken(Box<CryptoToken>),
}

/// Why a call was released: the ReleaseCompleteReasons roamgate uses by
/// name, any other one as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseReason {
    /// No route to the callee (unknown number, callee switched off).
    UnreachableDestination,
    /// The callee refused the call.
    DestinationRejection,
    /// A wrong or replayed ticket.
    NoPermission,
    /// The callee is busy.
    InConf,
    UndefinedReason,
    /// A security check failed (forged or replayed signalling).
    SecurityDenied,
    /// The callee is not registered.
    CalledPartyNotRegistered,
    /// The integrity check of a message failed.
    SecurityIntegrityFailed,
    /// A replayed message.
    SecurityReplay,
    /// A message out of the freshness window.
    SecurityWrongSyncTime,
    /// Any other reason, as decoded (never one of the named ones).
    Other(ReleaseCompleteReason),
}

impl ReleaseReason {
    fn to_asn(&self) -> ReleaseCompleteReason {
        use ReleaseCompleteReason as R;
        match self {
            Self::UnreachableDestination => R::UnreachableDestination(()),
            Self::DestinationRejection => R::DestinationRejection(()),
            Self::NoPermission => R::NoPermission(()),
            Self::InConf => R::InConf(()),
            Self::UndefinedReason => R::UndefinedReason(()),
            Self::Other(r) => r.clone(),
            Self::SecurityDenied => R::SecurityDenied(()),
            Self::CalledPartyNotRegistered => R::CalledPartyNotRegistered(()),
            Self::SecurityIntegrityFailed => {
                R::SecurityError(SecurityErrors::SecurityIntegrityFailed(()))
            }
            Self::SecurityReplay => R::SecurityError(SecurityErrors::SecurityReplay(())),
            Self::SecurityWrongSyncTime => {
                R::SecurityError(SecurityErrors::SecurityWrongSyncTime(()))
            }
        }
    }

    fn from_asn(r: &ReleaseCompleteReason) -> Self {
        use ReleaseCompleteReason as R;
        match r {
            R::UnreachableDestination(()) => Self::UnreachableDestination,
            R::DestinationRejection(()) => Self::DestinationRejection,
            R::NoPermission(()) => Self::NoPermission,
            R::InConf(()) => Self::InConf,
            R::UndefinedReason(()) => Self::UndefinedReason,
            R::SecurityDenied(()) => Self::SecurityDenied,
            R::CalledPartyNotRegistered(()) => Self::CalledPartyNotRegistered,
            R::SecurityError(SecurityErrors::SecurityIntegrityFailed(())) => {
                Self::SecurityIntegrityFailed
            }
            R::SecurityError(SecurityErrors::SecurityReplay(())) => Self::SecurityReplay,
            R::SecurityError(SecurityErrors::SecurityWrongSyncTime(())) => {
                Self::SecurityWrongSyncTime
            }
            other => Self::Other(other.clone()),
        }
    }
}

/// What is particular to each message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    Setup {
        conference_id: [u8; 16],
        /// The caller's E.164 number (sourceAddress dialledDigits).
        calling_number: Option<String>,
        /// The dialled E.164 number (Q.931 called party number and
        /// destinationAddress dialledDigits).
        called_number: String,
        /// The fastStart proposals, in order of preference.
        fast_start: Vec<Channel>,
    },
    CallProceeding,
    Alerting,
    Connect {
        conference_id: [u8; 16],
        /// The accepted fastStart proposal(s).
        fast_start: Vec<Channel>,
    },
    ReleaseComplete {
        /// The Q.850 cause value of the Q.931 Cause IE.
        cause: Option<u8>,
        reason: Option<ReleaseReason>,
    },
}

impl MessageBody {
    pub const fn message_type(&self) -> MessageType {
        match self {
            Self::Setup { .. } => MessageType::Setup,
            Self::CallProceeding => MessageType::CallProceeding,
            Self::Alerting => MessageType::Alerting,
            Self::Connect { .. } => MessageType::Connect,
            Self::ReleaseComplete { .. } => MessageType::ReleaseComplete,
        }
    }
}

/// One call signalling message, as roamgate sends and reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMessage {
    /// The Q.931 call reference value (15 bits).
    pub call_reference: u16,
    /// The Q.931 call reference flag: set in messages from the callee.
    pub from_destination: bool,
    /// callIdentifier, the call's GUID.
    pub call_identifier: [u8; 16],
    /// The Q.931 Display IE.
    pub display: Option<String>,
    /// The Kerberos AP-REQ / AP-REP DER (a ClearToken in `tokens`).
    pub kerberos: Option<Vec<u8>>,
    /// The H.235 hashed token (in `cryptoTokens`), set by [`h235::sign`].
    pub integrity: Option<Integrity>,
    pub body: MessageBody,
}

fn digits(s: &str, what: &'static str) -> Result<AliasAddress, Error> {
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|c| q931::is_dialled_digit(&c)) {
        return Err(Error::InvalidField(what));
    }
    let ia5 = Ia5String::try_from(s.to_owned()).map_err(|_| Error::InvalidField(what))?;
    Ok(AliasAddress::DialledDigits(DialledDigits(ia5)))
}

fn first_digits(a: &Option<SequenceOf<AliasAddress>>) -> Option<String> {
    a.as_ref()?.iter().find_map(|a| match a {
        AliasAddress::DialledDigits(d) => Some(d.0.to_string()),
        _ => None,
    })
}

fn fast_start_bytes(chans: &[Channel]) -> Result<Option<SequenceOf<OctetString>>, Error> {
    if chans.is_empty() {
        return Ok(None);
    }
    chans
        .iter()
        .map(|c| c.to_olc_bytes().map(OctetString::from))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn fast_start_channels(f: &Option<SequenceOf<OctetString>>) -> Result<Vec<Channel>, Error> {
    f.iter()
        .flatten()
        .map(|b| Channel::from_olc_bytes(b))
        .collect()
}

impl CallMessage {
    /// The Kerberos AP-REQ / AP-REP DER the message carries.
    pub fn kerberos_token(&self) -> Option<&[u8]> {
        self.kerberos.as_deref()
    }

    /// The message carrying `der` (an AP-REQ or AP-REP).
    pub fn with_kerberos_token(mut self, der: &[u8]) -> Self {
        self.kerberos = Some(der.to_vec());
        self
    }

    fn tokens(&self) -> Option<SequenceOf<ClearToken>> {
        self.kerberos
            .as_ref()
            .map(|k| vec![h235::kerberos_clear_token(k)])
    }

    fn crypto_tokens(&self) -> Result<Option<SequenceOf<CryptoH323Token>>, Error> {
        self.integrity
            .as_ref()
            .map(|i| {
                i.to_crypto_token()
                    .map(|t| vec![CryptoH323Token::NestedCryptoToken(Box::new(t))])
            })
            .transpose()
    }

    /// The H323-UserInformation of this message.
    pub fn user_information(&self) -> Result<H323UserInformation, Error> {
        let pid = PROTOCOL_IDENTIFIER.to_owned();
        let call_identifier = CallIdentifier {
            guid: FixedOctetString::new(self.call_identifier),
        };
        let tokens = self.tokens();
        let crypto_tokens = self.crypto_tokens()?;
        let body = match &self.body {
            MessageBody::Setup {
                conference_id,
                calling_number,
                called_number,
                fast_start,
            } => H323MessageBody::Setup(Box::new(SetupUuie {
                protocol_identifier: pid,
                h245_address: None,
                source_address: calling_number
                    .as_deref()
                    .map(|n| digits(n, "calling number").map(|a| vec![a]))
                    .transpose()?,
                source_info: EndpointType::terminal(),
                destination_address: Some(vec![digits(called_number, "called number")?]),
                dest_call_signal_address: None,
                dest_extra_call_info: None,
                dest_extra_crv: None,
                active_mc: false,
                conference_id: FixedOctetString::new(*conference_id),
                conference_goal: ConferenceGoal::Create(()),
                call_services: None,
                call_type: CallType::PointToPoint(()),
                source_call_signal_address: None,
                remote_extension_address: None,
                call_identifier,
                h245_security_capability: None,
                tokens,
                crypto_tokens,
                fast_start: fast_start_bytes(fast_start)?,
                media_wait_for_connect: false,
                can_overlap_send: false,
                endpoint_identifier: None,
                multiple_calls: false,
                maintain_connection: false,
            })),
            MessageBody::CallProceeding => {
                H323MessageBody::CallProceeding(Box::new(CallProceedingUuie {
                    protocol_identifier: pid,
                    destination_info: EndpointType::terminal(),
                    h245_address: None,
                    call_identifier,
                    h245_security_mode: None,
                    tokens,
                    crypto_tokens,
                    fast_start: None,
                    multiple_calls: false,
                    maintain_connection: false,
                }))
            }
            MessageBody::Alerting => H323MessageBody::Alerting(Box::new(AlertingUuie {
                protocol_identifier: pid,
                destination_info: EndpointType::terminal(),
                h245_address: None,
                call_identifier,
                h245_security_mode: None,
                tokens,
                crypto_tokens,
                fast_start: None,
                multiple_calls: false,
                maintain_connection: false,
            })),
            MessageBody::Connect {
                conference_id,
                fast_start,
            } => H323MessageBody::Connect(Box::new(ConnectUuie {
                protocol_identifier: pid,
                h245_address: None,
                destination_info: EndpointType::terminal(),
                conference_id: FixedOctetString::new(*conference_id),
                call_identifier,
                h245_security_mode: None,
                tokens,
                crypto_tokens,
                fast_start: fast_start_bytes(fast_start)?,
                multiple_calls: false,
                maintain_connection: false,
            })),
            MessageBody::ReleaseComplete { reason, .. } => {
                H323MessageBody::ReleaseComplete(Box::new(ReleaseCompleteUuie {
                    protocol_identifier: pid,
                    reason: reason.as_ref().map(ReleaseReason::to_asn),
                    call_identifier,
                    tokens,
                    crypto_tokens,
                }))
            }
        };
        Ok(H323UserInformation {
            h323_uu_pdu: H323UuPdu {
                h323_message_body: body,
                non_standard_data: None,
                h4501_supplementary_service: None,
                h245_tunnelling: false,
            },
            user_data: None,
        })
    }

    /// The Q.931 message of this message.
    pub fn q931(&self) -> Result<q931::Repr, Error> {
        let uu = rasn::aper::encode(&self.user_information()?)
            .map_err(|e| Error::Encode(e.to_string()))?;
        let (bearer, called, cause) = match &self.body {
            MessageBody::Setup { called_number, .. } => (
                Some(q931::BEARER_SPEECH_ULAW.to_vec()),
                Some(called_number.clone()),
                None,
            ),
            MessageBody::ReleaseComplete { cause, .. } => (None, None, *cause),
            _ => (None, None, None),
        };
        Ok(q931::Repr {
            call_reference: self.call_reference,
            from_destination: self.from_destination,
            message_type: self.body.message_type(),
            bearer_capability: bearer,
            cause,
            display: self.display.clone(),
            called_party_number: called,
            user_user: Some(uu),
        })
    }

    /// The whole message: TPKT, Q.931, H.225.0.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        if self.call_reference > 0x7fff {
            return Err(Error::InvalidField("call reference"));
        }
        tpkt::emit(&self.q931()?.to_bytes()?)
    }

    /// Parses one whole message (exactly one TPKT).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let frame = tpkt::Packet::new_checked(bytes)?;
        let q = q931::Repr::parse(frame.payload())?;
        let uu = q.user_user.as_ref().ok_or(Error::MissingUserUser)?;
        let info: H323UserInformation =
            rasn::aper::decode(uu).map_err(|e| Error::Decode(e.to_string()))?;
        Self::from_parts(&q, info)
    }

    fn from_parts(q: &q931::Repr, info: H323UserInformation) -> Result<Self, Error> {
        let mismatch = |body: &'static str| Error::BodyMismatch {
            q931: q.message_type.name(),
            body,
        };
        type Parts = (
            ObjectIdentifier,
            CallIdentifier,
            Option<SequenceOf<ClearToken>>,
            Option<SequenceOf<CryptoH323Token>>,
            MessageBody,
        );
        let (pid, cid, tokens, crypto, body): Parts = match info.h323_uu_pdu.h323_message_body {
            H323MessageBody::Setup(s) => {
                if q.message_type != MessageType::Setup {
                    return Err(mismatch("setup"));
                }
                let uuie_number = first_digits(&s.destination_address);
                let called_number = match (q.called_party_number.clone(), uuie_number) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(Error::InvalidField("called party number"))
                    }
                    (Some(a), _) | (None, Some(a)) => a,
                    (None, None) => return Err(Error::MissingField("called party number")),
                };
                let body = MessageBody::Setup {
                    conference_id: *s.conference_id,
                    calling_number: first_digits(&s.source_address),
                    called_number,
                    fast_start: fast_start_channels(&s.fast_start)?,
                };
                (
                    s.protocol_identifier,
                    s.call_identifier,
                    s.tokens,
                    s.crypto_tokens,
                    body,
                )
            }
            H323MessageBody::CallProceeding(s) => {
                if q.message_type != MessageType::CallProceeding {
                    return Err(mismatch("callProceeding"));
                }
                (
                    s.protocol_identifier,
                    s.call_identifier,
                    s.tokens,
                    s.crypto_tokens,
                    MessageBody::CallProceeding,
                )
            }
            H323MessageBody::Alerting(s) => {
                if q.message_type != MessageType::Alerting {
                    return Err(mismatch("alerting"));
                }
                (
                    s.protocol_identifier,
                    s.call_identifier,
                    s.tokens,
                    s.crypto_tokens,
                    MessageBody::Alerting,
                )
            }
            H323MessageBody::Connect(s) => {
                if q.message_type != MessageType::Connect {
                    return Err(mismatch("connect"));
                }
                let body = MessageBody::Connect {
                    conference_id: *s.conference_id,
                    fast_start: fast_start_channels(&s.fast_start)?,
                };
                (
                    s.protocol_identifier,
                    s.call_identifier,
                    s.tokens,
                    s.crypto_tokens,
                    body,
                )
            }
            H323MessageBody::ReleaseComplete(s) => {
                if q.message_type != MessageType::ReleaseComplete {
                    return Err(mismatch("releaseComplete"));
                }
                let body = MessageBody::ReleaseComplete {
                    cause: q.cause,
                    reason: s.reason.as_ref().map(ReleaseReason::from_asn),
                };
                (
                    s.protocol_identifier,
                    s.call_identifier,
                    s.tokens,
                    s.crypto_tokens,
                    body,
                )
            }
            _ => return Err(Error::UnsupportedBody),
        };
        if *pid != *PROTOCOL_IDENTIFIER {
            return Err(Error::InvalidField("protocolIdentifier"));
        }
        let kerberos = tokens
            .iter()
            .flatten()
            .find_map(h235::kerberos_der)
            .map(<[u8]>::to_vec);
        let integrity = crypto
            .iter()
            .flatten()
            .find_map(|t| match t {
                CryptoH323Token::NestedCryptoToken(c) => Some(Integrity::from_crypto_token(c)),
                _ => None,
            })
            .transpose()?;
        Ok(Self {
            call_reference: q.call_reference,
            from_destination: q.from_destination,
            call_identifier: *cid.guid,
            display: q.display.clone(),
            kerberos,
            integrity,
            body,
        })
    }
}
