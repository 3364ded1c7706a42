use std::io::Write;

use clap::Parser;
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
