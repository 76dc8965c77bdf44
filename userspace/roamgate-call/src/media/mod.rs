//! The media of a call: G.711 speech in RTP at 20 ms a packet, SRTP
//! under the call's keys, and the RFC 3550 statistics of each stream.

pub mod g711;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod stream;
