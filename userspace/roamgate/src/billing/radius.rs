//! RADIUS accounting sender: a STUB with the interface the real sender
//! (written on another branch) has; that file replaces this one at merge.
//! This stub sends nothing: records stay in the durable outbox.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// `[radius]`: where the accounting records go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusSection {
    /// `HOST:PORT` of the RADIUS accounting server; empty = off (records
    /// wait in the outbox).
    pub server: String,
    /// File holding the shared secret (mode 0600).
    pub secret_file: PathBuf,
    /// NAS-Identifier sent in every record.
    pub nas_identifier: String,
    /// Wait for an Accounting-Response before retransmitting.
    pub timeout_ms: u64,
}

impl Default for RadiusSection {
    fn default() -> Self {
        Self {
            server: String::new(),
            secret_file: PathBuf::from("/etc/roamgate/radius.secret"),
            nas_identifier: "roamgate".to_owned(),
            timeout_ms: 3000,
        }
    }
}

/// The sender's counters, for the metrics.
#[derive(Debug, Default)]
pub struct RadiusStats {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub retransmitted: AtomicU64,
    pub failed: AtomicU64,
}

/// Delivers the outbox until `shutdown`. STUB: waits for shutdown.
pub async fn run_sender(
    ledger: Arc<Mutex<roamgate_billing::SqliteLedger>>,
    cfg: RadiusSection,
    stats: Arc<RadiusStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let _ = (ledger, cfg, stats);
    shutdown.cancelled().await;
    Ok(())
}
