//! Structured logs through `tracing`; aya-log records from the XDP program
//! arrive through the `log` bridge.

use std::{io::IsTerminal as _, sync::OnceLock};

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// `--log-format` from the command line; wins over a config's [log] format.
static FORMAT_OVERRIDE: OnceLock<LogFormat> = OnceLock::new();

/// Makes every later [`init`] use `format`, whatever the role's config says
/// (the roles read their config, and so call `init`, in different places).
pub fn override_format(format: LogFormat) {
    let _ = FORMAT_OVERRIDE.set(format);
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`, and
/// `--log-format` ([`override_format`]) overrides `format`.
pub fn init(format: LogFormat, level: &str) {
    let format = FORMAT_OVERRIDE.get().copied().unwrap_or(format);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let res = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = res;
}
