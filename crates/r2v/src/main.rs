//! The `r2v` binary: parses arguments, starts tracing, and hands each subcommand to
//! one function in [`commands`]. No business logic lives here.

mod audio;
mod cli;
mod commands;
mod logging;
mod progress;
mod service;
mod settings;
mod wan;

use cli::Command;
use commands::{Exit, InvalidRequestFile};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match settings::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(settings::SettingsError::Flags(e)) => e.exit(),
        Err(settings::SettingsError::File(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let default_filter = match cli.command {
        Command::Serve(_) | Command::Worker(_) | Command::Wan(_) | Command::Audio(_) => "info",
        Command::Run(_)
        | Command::Validate(_)
        | Command::Keys(_)
        | Command::Openapi
        | Command::Models(_) => "warn",
    };
    logging::init_tracing(cli.log_format, default_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    let (json, result) = match cli.command {
        Command::Run(args) => (args.json, commands::run(args, &runtime)),
        Command::Validate(args) => (args.json, commands::validate(args, &runtime)),
        Command::Serve(args) => (false, service::serve(args, &runtime)),
        Command::Keys(args) => (false, service::keys(args, &runtime)),
        Command::Worker(args) => (false, service::worker(args, &runtime)),
        Command::Wan(args) => (false, wan::wan(args)),
        Command::Audio(args) => (false, audio::audio(args)),
        Command::Models(args) => (false, wan::models(args)),
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&r2v_server::openapi::document()).unwrap_or_default()
            );
            (false, Ok(Exit::Ok))
        }
    };
    match result {
        Ok(exit) => exit.into(),
        Err(error) => match error.downcast_ref::<InvalidRequestFile>() {
            Some(invalid) => commands::report_invalid_file(invalid, json).into(),
            None => {
                eprintln!("error: {error:#}");
                Exit::Failure.into()
            }
        },
    }
}
