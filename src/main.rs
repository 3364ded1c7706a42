use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use stackpilot::cli::pipeline::{self, target};
use stackpilot::cli::{Cli, Command};

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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let done = match cli.command {
        Command::Run(args) => {
            stackpilot::runtime::telemetry::init(args.log_format);
            return stackpilot::run::run(*args).await;
        }
        Command::Approve {
            target: object,
            namespace,
            change_set,
            comment,
        } => match pipeline::pipeline_name(&object) {
            Some(name) => pipeline::decide(name, namespace.as_deref(), true, comment).await?,
            None => stackpilot::approve::approve(&object, namespace.as_deref(), change_set.as_deref()).await?,
        },
        Command::Reject {
            target: t,
            namespace,
            comment,
        } => pipeline::decide(target(&t)?, namespace.as_deref(), false, comment).await?,
        Command::Retry {
            target: t,
            namespace,
            all,
        } => pipeline::retry(target(&t)?, namespace.as_deref(), all).await?,
        Command::Stop {
            target: t,
            namespace,
            abandon,
            reason,
        } => pipeline::stop(target(&t)?, namespace.as_deref(), abandon, reason).await?,
        Command::Get { target: t, namespace } => pipeline::get(target(&t)?, namespace.as_deref()).await?,
        Command::History { target: t, namespace } => pipeline::show_history(target(&t)?, namespace.as_deref()).await?,
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
    print!("{}", done.trim_end());
    println!();
    Ok(())
}
