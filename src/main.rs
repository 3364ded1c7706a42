use std::io::Write;

use clap::Parser;
use stackpilot::cli::deployment::{self, Request};
use stackpilot::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            stackpilot::runtime::telemetry::init(args.log_format);
            stackpilot::run::run(*args).await
        }
        Command::Approve {
            stack,
            namespace,
            change_set,
        } => {
            let done = stackpilot::approve::approve(&stack, namespace.as_deref(), change_set.as_deref()).await?;
            println!("{done}");
            Ok(())
        }
        Command::Status(target) => people(&target, Request::Status).await,
        Command::History(target) => people(&target, Request::History).await,
        Command::Promote { target, full } => people(&target, Request::Promote { full }).await,
        Command::Pause(target) => people(&target, Request::Pause).await,
        Command::Resume(target) => people(&target, Request::Resume).await,
        Command::Abort(target) => people(&target, Request::Abort).await,
        Command::Retry(target) => people(&target, Request::Retry).await,
        Command::Rollback { target, to } => people(&target, Request::RollbackTo(to)).await,
        Command::Crd { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)?;
            for (file, crd) in stackpilot::api::crds() {
                std::fs::write(dir.join(file), stackpilot::api::crd_yaml(&crd))?;
            }
            Ok(())
        }
        Command::Crd { out_dir: None } => {
            let mut out = std::io::stdout().lock();
            for (_, crd) in stackpilot::api::crds() {
                writeln!(out, "---\n{}", stackpilot::api::crd_yaml(&crd))?;
            }
            Ok(())
        }
    }
}

/// A StackDeployment command: its answer, or a one-line error.
async fn people(target: &stackpilot::cli::DeploymentRef, request: Request) -> anyhow::Result<()> {
    match deployment::run(target, request).await {
        Ok(answer) => {
            println!("{answer}");
            Ok(())
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1)
        }
    }
}
