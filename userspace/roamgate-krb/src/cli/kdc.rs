//! `roamgate kdc ...`: manage and serve the embedded KDC.

#[derive(clap::Subcommand, Debug)]
pub enum KdcCommand {
    /// Create a realm and its principal database.
    Init {
        #[arg(long)]
        realm: String,
        #[arg(long)]
        db: std::path::PathBuf,
    },
}

pub async fn run(cmd: KdcCommand) -> anyhow::Result<()> {
    match cmd {
        KdcCommand::Init { .. } => anyhow::bail!("kdc init is not implemented yet"),
    }
}
