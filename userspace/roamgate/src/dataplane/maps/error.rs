use std::net::Ipv4Addr;

use aya::maps::MapError;
use roamgate_common::maps::Role;

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("opening pinned map {path}: {source} (is the data plane loaded with this pin_dir?)")]
    Open {
        path: String,
        #[source]
        source: MapError,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error(
        "tunnel SPI {spi:#010x} already exists with other keys or role: rekey under a new SPI"
    )]
    SpiInUse { spi: u32 },
    #[error("binding for {home} refers to SPI {spi:#010x}, which has no tunnel: install the tunnel first")]
    NoTunnel { home: Ipv4Addr, spi: u32 },
    #[error(
        "binding for {home} is a {binding:?} binding but tunnel SPI {spi:#010x} is {tunnel:?}"
    )]
    RoleMismatch {
        home: Ipv4Addr,
        spi: u32,
        binding: Role,
        tunnel: Option<Role>,
    },
    #[error("tunnel SPI {spi:#010x} is still used by the binding for {home}")]
    TunnelInUse { spi: u32, home: Ipv4Addr },
    #[error("SPI 0 is reserved")]
    ZeroSpi,
    #[error("creating map {map}: {source}")]
    Create {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("pinning map {path}: {source}")]
    Pin {
        path: String,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("pin directory {path}: {source}")]
    PinDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
