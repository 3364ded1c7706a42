use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use stackpilot::cli::deployment::{self, Request};
use stackpilot::cli::object::{Kind, parse};
use stackpilot::cli::{Cli, Command, ObjectRef, pipeline};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        // One line, causes included, never a backtrace.
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

const BOTH: &[Kind] = &[Kind::StackDeployment, Kind::Pipeline];
const DEPLOYMENT: &[Kind] = &[Kind::StackDeployment];

async fn run(cli: Cli) -> anyhow::Result<()> {
    let done = match cli.command {
        Command::Run(args) => {
            stackpilot::runtime::telemetry::init(args.log_format);
            return stackpilot::run::run(*args).await;
        }
        Command::Approve {
            target: ObjectRef { object, namespace },
            change_set,
            revision,
            comment,
        } => {
            let ns = namespace.as_deref();
            let kinds = [Kind::Stack, Kind::StackDeployment, Kind::Pipeline];
            match parse(&object, "approve", &kinds, Some(Kind::Stack))? {
                (Kind::Pipeline, name) => pipeline::decide(name, ns, true, comment).await?,
                (Kind::StackDeployment, name) => deployment::run(name, ns, Request::Approve { revision }).await?,
                (_, name) => stackpilot::approve::approve(name, ns, change_set.as_deref()).await?,
            }
        }
        Command::Reject { target, comment } => {
            let (_, name) = parse(&target.object, "reject", &[Kind::Pipeline], None)?;
            pipeline::decide(name, target.namespace.as_deref(), false, comment).await?
        }
        Command::Retry { target, all } => match parse(&target.object, "retry", BOTH, None)? {
            (Kind::Pipeline, name) => pipeline::retry(name, target.namespace.as_deref(), all).await?,
            (_, name) => deployment::run(name, target.namespace.as_deref(), Request::Retry).await?,
        },
        Command::Stop {
            target,
            abandon,
            reason,
        } => {
            let (_, name) = parse(&target.object, "stop", &[Kind::Pipeline], None)?;
            pipeline::stop(name, target.namespace.as_deref(), abandon, reason).await?
        }
        Command::Status(target) => match parse(&target.object, "status", BOTH, None)? {
            (Kind::Pipeline, name) => pipeline::get(name, target.namespace.as_deref()).await?,
            (_, name) => deployment::run(name, target.namespace.as_deref(), Request::Status).await?,
        },
        Command::History(target) => match parse(&target.object, "history", BOTH, None)? {
            (Kind::Pipeline, name) => pipeline::show_history(name, target.namespace.as_deref()).await?,
            (_, name) => deployment::run(name, target.namespace.as_deref(), Request::History).await?,
        },
        Command::Promote { target, full } => deployment_request(&target, "promote", Request::Promote { full }).await?,
        Command::Pause(target) => deployment_request(&target, "pause", Request::Pause).await?,
        Command::Resume(target) => deployment_request(&target, "resume", Request::Resume).await?,
        Command::Abort(target) => deployment_request(&target, "abort", Request::Abort).await?,
        Command::Rollback { target, to } => deployment_request(&target, "rollback", Request::RollbackTo(to)).await?,
        Command::Crd { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)?;
            for (file, crd) in stackpilot::api::crds() {
                std::fs::write(dir.join(file), stackpilot::api::crd_yaml(&crd))?;
            }
            return Ok(());
        }
        Command::Crd { out_dir: None } => {
            let mut out = std::io::stdout().lock();
            for (_, crd) in stackpilot::api::crds() {
                writeln!(out, "---\n{}", stackpilot::api::crd_yaml(&crd))?;
            }
            return Ok(());
        }
    };
    println!("{}", done.trim_end());
    Ok(())
}

/// A command only StackDeployments take (a bare name is one).
async fn deployment_request(target: &ObjectRef, command: &str, request: Request) -> anyhow::Result<String> {
    let (_, name) = parse(&target.object, command, DEPLOYMENT, Some(Kind::StackDeployment))?;
    deployment::run(name, target.namespace.as_deref(), request).await
}
