use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = nas::cli::Cli::parse();
    match nas::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
