//! stackpilot: AWS CloudFormation stacks, delivery pipelines and progressive
//! deployments as Kubernetes resources.

pub mod account;
pub mod aws;
pub mod api;
pub mod backoff;
pub mod conditions;
pub mod context;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod stack;
pub mod admin;
pub mod cli;
pub mod run;
pub mod telemetry;
pub mod tenancy;
