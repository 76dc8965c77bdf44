//! Linux platform code that the roles share (home agent, mobile node, TUN
//! forwarder): rtnetlink (links, routes, neighbours, rules), proxy ARP and gratuitous ARP
//! on `AF_PACKET`, and key files.

pub mod fs;
pub mod keyfile;
pub mod neigh;
pub mod rtnl;
