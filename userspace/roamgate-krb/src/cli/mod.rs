//! The `roamgate kdc ...` and `roamgate krb ...` subcommands. The `roamgate`
//! binary embeds these enums and calls `run`.

pub mod kdc;
pub mod krb;
