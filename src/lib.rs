//! flashblade-csi: a Kubernetes CSI driver for Pure Storage FlashBlade NFS
//! file systems.
//!
//! Where to start: [`app::run`] wires a validated [`config::Config`] into the
//! gRPC [`server`]; [`identity`], [`controller`] and [`node`] hold the CSI
//! services; [`error`] is the one place errors become gRPC status codes;
//! [`flashblade`] talks to the array.

pub mod admin;
pub mod app;
pub(crate) mod authority;
pub mod cluster;
pub mod config;
pub(crate) mod context;
pub mod controller;
pub mod csi;
pub(crate) mod deadline;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod flashblade;
pub mod identity;
pub(crate) mod inflight;
pub mod metrics;
pub mod node;
pub(crate) mod secret;
pub mod server;
pub mod telemetry;
pub(crate) mod text;
pub mod volume;
