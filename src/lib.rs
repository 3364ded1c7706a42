//! stackpilot: AWS CloudFormation stacks, delivery pipelines and progressive
//! deployments as Kubernetes resources.

pub mod account;
pub mod admin;
pub mod api;
pub mod approve;
pub mod aws;
pub mod backoff;
pub mod cli;
pub mod context;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod pipeline;
pub mod run;
pub mod runtime;
pub mod slots;
pub mod stack;
pub mod status_patch;
pub mod telemetry;
pub mod tenancy;
