//! Platform code the roles share (files and directories today; netlink,
//! AF_PACKET and interface lookups belong here too).

pub mod fs;
