//! `billsync`: run the services, alone or all in one process.

mod admin_api;
mod backfill;
mod cli;
mod operator;
mod replay;
mod services;
mod status;
mod sync;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    match cli::execute(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The chain reads "configuring X: file: key: reason", the whole story for an operator.
            eprintln!("billsync: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
