//! Command-line definitions (clap derive) and nothing else: `main.rs` turns
//! them into library calls.
use clap::{Args, Parser, Subcommand};

use crate::device::DeviceRequest;

#[derive(Debug, Parser)]
#[command(
    name = "nave-lab",
    version,
    about = "Train vision models with and without shortcuts, and audit what they learned with NAVE",
    propagate_version = true
)]
pub struct Cli {
    /// Device for models and tensors: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto", value_name = "DEVICE")]
    pub device: DeviceRequest,

    /// More output (-v: details, -vv: debugging).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors and results; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report versions, libtorch's location, CPU threads, CUDA and GPUs.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
