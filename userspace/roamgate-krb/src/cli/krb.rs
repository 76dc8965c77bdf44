//! `roamgate krb ...`: client tools (kinit, kvno, klist).

#[derive(clap::Subcommand, Debug)]
pub enum KrbCommand {
    /// List the tickets in a credential cache.
    Klist {
        #[arg(long)]
        ccache: std::path::PathBuf,
    },
}

pub async fn run(cmd: KrbCommand) -> anyhow::Result<()> {
    match cmd {
        KrbCommand::Klist { .. } => anyhow::bail!("krb klist is not implemented yet"),
    }
}
