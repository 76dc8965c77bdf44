//! The media a proxy sends and receives in a call: G.711 speech in RTP at
//! 20 ms a packet, and the RFC 3550 statistics of each stream.

pub mod g711;
pub mod rtcp;
pub mod rtp;
pub mod stream;
