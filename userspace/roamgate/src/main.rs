use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser as _;
use roamgate::{
    cli::{Cli, Command},
    config::ConfigFile,
    counters_cmd,
    gateway::{self, GatewayConfig},
    logging,
};
use tokio_util::sync::CancellationToken;

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("roamgate: starting the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("roamgate: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(format) = cli.log_format {
        logging::override_format(format);
    }
    match cli.command {
        Command::Gateway { config } => {
            let cfg = match &config {
                Some(path) => GatewayConfig::load(path)?,
                None => GatewayConfig::default(),
            };
            logging::init(cfg.log.format, &cfg.log.level);
            gateway::require_root()?;
            let shutdown = CancellationToken::new();
            gateway::cancel_on_signals(shutdown.clone())?;
            gateway::run(cfg, shutdown).await
        }
        Command::Status { config, json } => {
            let cfg = match &config {
                Some(path) => GatewayConfig::load(path)?,
                None => GatewayConfig::default(),
            };
            gateway::status::print(&cfg, json)
        }
        Command::Tunnel { config } => {
            let cfg = roamgate::tunnel::config::TunnelConfig::load(&config)?;
            logging::init(cfg.log.format, &cfg.log.level);
            gateway::require_root()?;
            let shutdown = CancellationToken::new();
            gateway::cancel_on_signals(shutdown.clone())?;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let forwarder = {
                let stop = stop.clone();
                tokio::task::spawn_blocking(move || roamgate::tunnel::run(&cfg, stop))
            };
            let stopper = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    shutdown.cancelled().await;
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                })
            };
            let res = forwarder.await?;
            stopper.abort();
            res.map(|_| ())
        }
        Command::HomeAgent { config, detach } => {
            let cfg = roamgate::home_agent::config::HomeAgentFile::load(&config)?;
            logging::init(cfg.log.format, &cfg.log.level);
            gateway::require_root()?;
            let shutdown = CancellationToken::new();
            gateway::cancel_on_signals(shutdown.clone())?;
            roamgate::home_agent::run(cfg, detach, shutdown).await
        }
        Command::MobileNode { config } => {
            let cfg = roamgate::mobile_node::config::MobileNodeFile::load(&config)?;
            logging::init(cfg.log.format, &cfg.log.level);
            gateway::require_root()?;
            let shutdown = CancellationToken::new();
            gateway::cancel_on_signals(shutdown.clone())?;
            roamgate::mobile_node::run(cfg, shutdown).await
        }
        Command::Bindings {
            pin_dir,
            journal,
            json,
        } => roamgate::home_agent::bindings::print(&pin_dir, journal.as_deref(), json),
        Command::Counters { pin_dir, json } => counters_cmd::print(&pin_dir, json),
        Command::Kdc { command } => {
            logging::init(Default::default(), "info");
            roamgate_krb::cli::kdc::run(command).await
        }
        Command::Install {
            systemd: _,
            prefix,
            bin_dir,
            dry_run,
        } => {
            let binary = std::env::current_exe().context("finding this binary to install")?;
            let opts = roamgate::install::InstallOptions {
                prefix,
                bin_dir,
                dry_run,
                binary,
            };
            let mut out = std::io::stdout().lock();
            for line in roamgate::install::install(&opts)? {
                // A closed pipe (`| head`) ends the listing, not the install.
                if writeln!(out, "{line}").is_err() {
                    break;
                }
            }
            Ok(())
        }
        Command::Krb { command } => roamgate_krb::cli::krb::run(command).await,
        Command::Directory { command } => roamgate::directory::run(command).await,
        Command::Billing { command } => roamgate::billing::run(command).await,
        Command::Unit { command } => roamgate::unit::run(command).await,
        Command::ProxyManager { config } => {
            let cfg = roamgate::proxy_manager::config::ProxyManagerFile::load(&config)?;
            logging::init(cfg.log.format, &cfg.log.level);
            gateway::require_root()?;
            let shutdown = CancellationToken::new();
            gateway::cancel_on_signals(shutdown.clone())?;
            roamgate::proxy_manager::run(cfg, shutdown).await
        }
        Command::BaseStation { config } => {
            let cfg = roamgate::base_station::BaseStationFile::load(&config)?;
            logging::init(cfg.log.format, &cfg.log.level);
            let shutdown = CancellationToken::new();
            gateway::cancel_on_signals(shutdown.clone())?;
            roamgate::base_station::run(cfg, shutdown).await
        }
    }
}
