//! nave-lab: train vision models with and without shortcuts, and audit what
//! they learned with NAVE (Neuro-Activated Vision Explanations, see
//! `paper/nave.txt`): cluster a frozen network's feature activations and read
//! the clusters as a segmentation of the image.
//!
//! Data flows one way: config -> data -> models -> train -> run folder ->
//! nave -> detect -> audit -> report. A module never imports one further along: the
//! audit reads run folders (`run_folder`) and datasets (`data::store`), and
//! never the training loop.
pub mod audit;
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
pub mod run_folder;
pub mod signals;
pub mod slurm;
pub mod staging;
pub mod train;
pub mod ui;
