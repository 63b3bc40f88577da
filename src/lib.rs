//! nave-lab: train vision models with and without shortcuts, and audit what
//! they learned with NAVE (Neuro-Activated Vision Explanations, see
//! `paper/nave.txt`): cluster a frozen network's feature activations and read
//! the clusters as a segmentation of the image.
//!
//! Modules import in one direction, each only from those before it (checked
//! by `scripts/structure.py`):
//!
//! - leaf utilities: failpoint, signals, ui, io, lock, staging, device, cxx;
//! - data -> models -> config (the experiment file names datasets, artefacts
//!   and architectures) -> fetch -> run_folder -> train;
//! - nave -> localize -> detect -> audit -> revise -> report -> bench (the
//!   audit reads run folders and datasets, never the training loop; revise
//!   fine-tunes through it, from what the audit found);
//! - the entry points: slurm, status (where a study stands), cli, commands.
//!
//! Data flows as a user's day does: an experiment's runs are trained into run
//! folders, NAVE clusters their features, the detector and the audit measure
//! them, the report shows them.
pub mod audit;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cxx;
pub mod data;
pub mod detect;
pub mod device;
pub mod failpoint;
pub mod fetch;
pub mod io;
pub mod localize;
pub mod lock;
pub mod models;
pub mod nave;
pub mod report;
pub mod revise;
pub mod run_folder;
pub mod signals;
pub mod slurm;
pub mod staging;
pub mod status;
pub mod train;
pub mod ui;
