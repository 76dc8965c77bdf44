//! The `roamgate` command line: one subcommand per role.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "roamgate",
    version,
    about = "Secure mobile IP telephony for Linux gateways",
    long_about = "roamgate keeps handsets and laptops on one home IP address while they move \
between access networks. Kerberos V5 authenticates every party; XDP programs authenticate \
and forward the Mobile IP tunnels and the voice."
)]
pub struct Cli {
    /// Log as human-readable text or as one JSON object per line; overrides
    /// the config's [log] format.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<crate::config::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the home gateway in one process: the XDP data plane and home
    /// agent, the embedded KDC, directory and billing (SQLite under
    /// state_dir), a proxy manager and base station for the home domain,
    /// metrics. The first run creates the realm and prints how to add a unit.
    Gateway {
        /// TOML configuration (see config/gateway.toml for every key and its default).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// One page on a home gateway: roles up, units attached, bindings,
    /// calls in progress, charges open, data-plane counters. Exits non-zero
    /// when a role that should run does not.
    Status {
        /// The gateway's configuration (its state_dir and pin_dir are read).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON instead of a page.
        #[arg(long)]
        json: bool,
    },
    /// Run the userspace tunnel forwarder (TUN + UDP 434): the fallback for
    /// hosts without XDP, interoperable with the XDP data plane.
    Tunnel {
        /// TOML configuration (see config/tunnel.toml).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the data-plane counters from the pinned maps of a running (or
    /// stopped) gateway.
    Counters {
        /// bpffs directory holding the pinned maps.
        #[arg(long, default_value = roamgate_common::maps::PIN_DIR)]
        pin_dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the Mobile IP home agent (RFC 5944 on UDP 434): Kerberos-keyed
    /// registrations, binding journal, XDP data plane, proxy ARP.
    HomeAgent {
        /// TOML configuration (see config/home-agent.toml).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// On exit, unpin the XDP links and remove proxy ARP entries (the
        /// data plane stops). By default forwarding continues without the
        /// daemon.
        #[arg(long)]
        detach: bool,
    },
    /// Run a Mobile IP mobile node (co-located care-of address): registers,
    /// follows care-of address changes, deregisters on shutdown.
    MobileNode {
        /// TOML configuration (see config/mobile-node.toml).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// List the bindings in the pinned maps with lifetime and counters
    /// (never keys).
    Bindings {
        /// bpffs directory holding the pinned maps.
        #[arg(long, default_value = roamgate_common::maps::PIN_DIR)]
        pin_dir: PathBuf,
        /// The home agent's binding journal (state_dir/bindings.sqlite) for
        /// lifetimes and clients.
        #[arg(long)]
        journal: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The embedded Kerberos KDC: create a realm, add principals, serve.
    Kdc {
        #[command(subcommand)]
        command: roamgate_krb::cli::kdc::KdcCommand,
    },
    /// The telephone directory: serve units' initiating information to
    /// callers with a ticket in the unit's name, and provision it.
    Directory {
        #[command(subcommand)]
        command: crate::directory::DirectoryCommand,
    },
    /// The debiting service: charges calls to the account of the ticket's
    /// client principal, once, durably (SQLite, group commit), and exports
    /// RADIUS accounting; also the ledger CLI (accounts, balance, credit,
    /// report).
    Billing {
        #[command(subcommand)]
        command: crate::billing::BillingCommand,
    },
    /// A handset or laptop: create its identity, switch on through a base
    /// station, switch off, ask its proxy's state.
    Unit {
        #[command(subcommand)]
        command: crate::unit::UnitCommand,
    },
    /// A base station: relays units' attach frames to its domain's proxy
    /// manager and the answers back (docs/attach.md §4).
    BaseStation {
        /// TOML configuration (see config/base-station.toml).
        #[arg(long, short, value_name = "FILE")]
        config: std::path::PathBuf,
    },
    /// The proxy manager: verifies units' switch-ons, fetches their
    /// initiating information from the directory in their name, and runs one
    /// proxy (a Mobile IP mobile node) per unit (docs/attach.md §6.3).
    ProxyManager {
        /// TOML configuration (see config/proxy-manager.toml).
        #[arg(long, short, value_name = "FILE")]
        config: std::path::PathBuf,
    },
    /// Install this binary, a hardened systemd unit per long-running role
    /// and the default configurations (never overwriting one that exists);
    /// prints what it did and the `systemctl enable --now` commands.
    Install {
        /// Install for systemd (the only kind of install so far).
        #[arg(long, required = true)]
        systemd: bool,
        /// Root of the target file system. Not "/": no user is created and
        /// systemd is not reloaded (packaging, images, tests).
        #[arg(long, default_value = "/", value_name = "DIR")]
        prefix: PathBuf,
        /// Where the binary goes on the target; written into the units.
        #[arg(long, default_value = crate::install::DEFAULT_BIN_DIR, value_name = "DIR")]
        bin_dir: PathBuf,
        /// Print what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Kerberos client tools: kinit, kvno, klist.
    Krb {
        #[command(subcommand)]
        command: roamgate_krb::cli::krb::KrbCommand,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::config::LogFormat;

    #[test]
    fn log_format_is_accepted_by_every_role_before_or_after_it() {
        let cli = Cli::try_parse_from(["roamgate", "--log-format", "json", "gateway"]).unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Json));
        let cli = Cli::try_parse_from([
            "roamgate",
            "home-agent",
            "--config",
            "x.toml",
            "--log-format",
            "text",
        ])
        .unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Text));
        let cli = Cli::try_parse_from(["roamgate", "counters"]).unwrap();
        assert_eq!(cli.log_format, None);
        assert!(Cli::try_parse_from(["roamgate", "--log-format", "xml", "gateway"]).is_err());
    }
}
