//! The bodies of the CLI's subcommands: each turns parsed arguments into
//! library calls and prints the result.
pub mod audit;
pub mod bench;
pub mod data;
pub mod explain;
pub mod localize;
pub mod train;
