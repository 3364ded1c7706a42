//! stackpilot: AWS CloudFormation stacks, delivery pipelines and progressive
//! deployments as Kubernetes resources.

pub mod account;
pub mod api;
pub mod approve;
pub mod aws;
pub mod cli;
pub mod deployment;
pub mod pipeline;
pub mod run;
pub mod runtime;
pub mod source;
pub mod stack;
