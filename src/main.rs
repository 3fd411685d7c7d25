use clap::Parser;
use nas::cli::{out, Cli};
use std::process::ExitCode;

/// Whether the raw arguments ask for JSON on stdout (before they parse).
fn asks_for_json() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--json" || a == "--format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--format" && w[1] == "json")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A usage error of a JSON command is JSON on stdout too (help and --version are
            // not errors).
            if e.use_stderr() && asks_for_json() {
                let text = e.render().to_string();
                let msg = anyhow::anyhow!("{}", text.trim().trim_start_matches("error: "));
                let _ = out::print(format_args!("{}\n", nas::cli::error_json(&msg)));
            }
            e.exit()
        }
    };
    let json = cli.json_output();
    match nas::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away: end quietly, as a Unix tool ended by SIGPIPE (see cli::out).
        Err(e) if out::is_closed(&e) => ExitCode::from(out::CLOSED_EXIT),
        Err(e) => {
            if json {
                let _ = out::print(format_args!("{}\n", nas::cli::error_json(&e)));
            }
            out::eprint(format_args!("error: {e:#}\n"));
            ExitCode::FAILURE
        }
    }
}
