//! roamgate control plane: the roles of the `roamgate` binary as a library.

pub mod base_station;
pub mod billing;
pub mod cli;
pub mod config;
pub mod counters_cmd;
pub mod dataplane;
pub mod directory;
pub mod gateway;
pub mod home_agent;
pub mod install;
pub mod logging;
pub mod metrics;
pub mod mobile_node;
pub mod platform;
pub mod proxy_manager;
pub mod tunnel;
pub mod unit;
