//! The command line with its `--config` file, parsed and checked once.
//!
//! Every flag of `serve` and `worker` is also a key of the TOML file given with `--config`
//! (the flag's long name with `_` for `-`; `auth = false` stands for `--no-auth`). A value
//! from the file becomes the flag it names and goes through that flag's own parser, so a
//! value refused as a flag is refused in the file with the same message, and a fleet's
//! nodes cannot be half-configured. Flags beat environment variables, which beat the file,
//! which beats the defaults.

use crate::cli::Cli;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use std::ffi::OsString;

/// Why the command line could not be used.
#[derive(Debug)]
pub enum SettingsError {
    /// The flags themselves (or `--help`, `--version`): clap prints and exits.
    Flags(clap::Error),
    /// The `--config` file: unreadable, not TOML, an unknown key or a refused value.
    File(String),
}

/// Parses `argv`, with the values of the subcommand's `--config` file under the flags.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, SettingsError> {
    let mut command = Cli::command();
    command.build();
    // A lenient first pass finds the file and what the command line and the environment
    // set; required flags may still be missing (the file may hold them).
    let strict = |argv: &[OsString]| command.clone().try_get_matches_from(argv);
    let lenient = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv);
    let found = lenient.ok().and_then(|matches| {
        let (name, sub) = matches.subcommand()?;
        let path = sub
            .try_get_one::<std::path::PathBuf>("config")
            .ok()??
            .clone();
        Some((name.to_owned(), sub.clone(), path))
    });
    let Some((name, sub, path)) = found else {
        return from_matches(&strict(&argv).map_err(SettingsError::Flags)?);
    };
    let sub = &sub;
    let path = path.as_path();
    let in_file =
        |message: String| SettingsError::File(format!("--config {}: {message}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| in_file(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| in_file(e.to_string()))?;
    let subcommand = command
        .find_subcommand(&name)
        .expect("the subcommand was just matched");
    let mut extra = Vec::new();
    for (key, value) in &table {
        extra.extend(flag_tokens(subcommand, sub, key, value).map_err(&in_file)?);
    }
    let mut full = argv.clone();
    full.extend(extra.into_iter().map(OsString::from));
    match strict(&full) {
        Ok(matches) => from_matches(&matches),
        Err(error) => match strict(&argv) {
            // The command line's own mistakes (and --help) are reported as such.
            Err(own) if own.kind() != clap::error::ErrorKind::MissingRequiredArgument => {
                Err(SettingsError::Flags(own))
            }
            _ => Err(in_file(
                error
                    .render()
                    .to_string()
                    .trim_start_matches("error: ")
                    .trim_end()
                    .to_owned(),
            )),
        },
    }
}

fn from_matches(matches: &ArgMatches) -> Result<Cli, SettingsError> {
    Cli::from_arg_matches(matches).map_err(SettingsError::Flags)
}

/// The flag tokens that stand for `key = value`; none when the command line or the
/// environment already set that flag.
fn flag_tokens(
    subcommand: &clap::Command,
    given: &ArgMatches,
    key: &str,
    value: &toml::Value,
) -> Result<Vec<String>, String> {
    let (key, value) = match (key, value) {
        ("auth", toml::Value::Boolean(auth)) => ("no_auth", toml::Value::Boolean(!auth)),
        _ => (key, value.clone()),
    };
    let long = key.replace('_', "-");
    let arg = subcommand
        .get_arguments()
        .find(|a| {
            a.get_long() == Some(long.as_str())
                && !matches!(long.as_str(), "config" | "help" | "version")
        })
        .ok_or_else(|| {
            format!(
                "unknown key `{key}`; the keys are the flags of `r2v {} --help` with `_` for `-`",
                subcommand.get_name()
            )
        })?;
    if matches!(
        given.value_source(arg.get_id().as_str()),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    ) {
        return Ok(Vec::new());
    }
    let text = |value: &toml::Value| match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!("`{key}` must be a string, a number or a boolean")),
    };
    Ok(match (arg.get_action(), &value) {
        (ArgAction::SetTrue, toml::Value::Boolean(true)) => vec![format!("--{long}")],
        (ArgAction::SetTrue, toml::Value::Boolean(false)) => Vec::new(),
        (ArgAction::SetTrue, _) => return Err(format!("`{key}` must be true or false")),
        (ArgAction::Append, toml::Value::Array(items)) => items
            .iter()
            .map(|item| text(item).map(|t| format!("--{long}={t}")))
            .collect::<Result<_, _>>()?,
        (_, value) => vec![format!("--{long}={}", text(value)?)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// A value each flag of `serve` and `worker` accepts, by key.
    fn sample(key: &str) -> &'static str {
        match key {
            "listen" => "\"127.0.0.1:9001\"",
            "data_dir" | "scratch_dir" | "kernel_cache" | "model_dir" | "audio_model_dir" => {
                "\"/tmp/r2v-x\""
            }
            "no_auth" | "allow_private_urls" => "true",
            "workers" => "3",
            "engine" => "\"wan\"",
            "device" => "\"cpu\"",
            "memory_budget_gb" => "12.5",
            "wan_dtype" => "\"bf16\"",
            "public_url" => "\"https://r2v.example.com\"",
            "worker_token" | "token" => "\"0123456789abcdef0\"",
            "max_body_bytes" => "1000000",
            "max_connections" => "7",
            "header_timeout_seconds" | "body_idle_timeout_seconds" => "4.5",
            "retention_seconds" => "3600",
            "max_attempts" => "5",
            "lease_seconds" => "40",
            "heartbeat_seconds" => "3",
            "x264_preset" => "\"slow\"",
            "blocked_term" => "[\"a\", \"b\"]",
            "price_720p_usd" | "price_1080p_usd" => "0.2",
            "api" => "\"http://10.0.0.5:8080\"",
            "database_url" => "\"postgres://r2v:pw@db:5432/r2v\"",
            "storage_url" => "\"s3://bucket/r2v\"",
            "id" => "\"w1\"",
            "log_format" => "\"json\"",
            other => panic!("no sample value for the key `{other}`: add one"),
        }
    }

    fn keys(subcommand: &str) -> Vec<String> {
        let mut command = Cli::command();
        command.build();
        command
            .find_subcommand(subcommand)
            .unwrap()
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !matches!(*l, "config" | "help" | "version"))
            .map(|l| l.replace('-', "_"))
            .collect()
    }

    fn parsed(args: &[&str]) -> Result<Cli, SettingsError> {
        parse(argv(args))
    }

    fn message(result: Result<Cli, SettingsError>) -> String {
        match result {
            Ok(cli) => panic!("accepted: {cli:?}"),
            Err(SettingsError::Flags(e)) => e.render().to_string(),
            Err(SettingsError::File(m)) => m,
        }
    }

    /// Every flag has a key, and the key means what the flag means.
    #[test]
    fn every_flag_has_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r2v.toml");
        let path = file.to_str().unwrap();
        for subcommand in ["serve", "worker"] {
            for key in keys(subcommand) {
                // The worker's required flags, unless the key under test is one of them.
                let required: Vec<&str> = match subcommand {
                    "worker" => [("api", "http://h:1"), ("token", "0123456789abcdef")]
                        .iter()
                        .filter(|(k, _)| *k != key)
                        .flat_map(|(k, v)| [if *k == "api" { "--api" } else { "--token" }, *v])
                        .collect(),
                    _ => Vec::new(),
                };
                let value = sample(&key);
                let flag = format!("--{}", key.replace('_', "-"));
                let flag_tokens: Vec<String> = if value == "true" {
                    vec![flag]
                } else if value.starts_with('[') {
                    vec![format!("{flag}=a"), format!("{flag}=b")]
                } else {
                    vec![format!("{flag}={}", value.trim_matches('"'))]
                };
                let flag_tokens: Vec<&str> = flag_tokens.iter().map(String::as_str).collect();
                std::fs::write(&file, format!("{key} = {value}\n")).unwrap();
                let base = ["r2v", subcommand, "--config", path];
                let from_file = parsed(&[&base[..], &required].concat())
                    .unwrap_or_else(|e| panic!("{subcommand} {key}: {e:?}"));
                std::fs::write(&file, "").unwrap();
                let from_flag = parsed(&[&base[..], &required, &flag_tokens].concat()).unwrap();
                let default = parsed(&[&base[..], &required].concat());
                let debug = |cli: &Cli| format!("{cli:?}");
                assert_eq!(debug(&from_file), debug(&from_flag), "{subcommand} {key}");
                if let Ok(default) = default {
                    assert_ne!(
                        debug(&from_file),
                        debug(&default),
                        "{subcommand} {key} = {value} changed nothing"
                    );
                }
            }
        }
    }

    /// A value the flag refuses is refused in the file, with the flag's message.
    #[test]
    fn refused_values_are_refused_alike() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r2v.toml");
        let path = file.to_str().unwrap();
        for (key, value) in [
            ("max_attempts", "0"),
            ("max_connections", "0"),
            ("header_timeout_seconds", "0"),
            ("body_idle_timeout_seconds", "-1"),
            ("lease_seconds", "0"),
            ("retention_seconds", "0"),
            ("x264_preset", "bogus"),
            ("wan_dtype", "f16"),
            ("device", "gpu"),
            ("memory_budget_gb", "-1"),
            ("public_url", "ftp://x"),
            ("worker_token", "short"),
            ("listen", "nowhere"),
            ("engine", "sora"),
            ("price_720p_usd", "-0.1"),
        ] {
            let flag = message(parsed(&[
                "r2v",
                "serve",
                &format!("--{}={value}", key.replace('_', "-")),
            ]));
            let quoted = if value.parse::<f64>().is_ok() {
                value.to_owned()
            } else {
                format!("\"{value}\"")
            };
            std::fs::write(&file, format!("{key} = {quoted}\n")).unwrap();
            let from_file = message(parsed(&["r2v", "serve", "--config", path]));
            let core = flag
                .trim_start_matches("error: ")
                .lines()
                .next()
                .unwrap()
                .to_owned();
            assert!(
                from_file.contains(&core),
                "{key}: flag says {flag:?}, file says {from_file:?}"
            );
        }
        std::fs::write(&file, "workerz = 3\n").unwrap();
        assert!(
            message(parsed(&["r2v", "serve", "--config", path])).contains("unknown key `workerz`")
        );
        std::fs::write(&file, "x264_preset = \"bogus\"\n").unwrap();
        let worker = message(parsed(&[
            "r2v",
            "worker",
            "--api",
            "http://h:1",
            "--token",
            "0123456789abcdef",
            "--config",
            path,
        ]));
        assert!(worker.contains("bogus"), "{worker}");
    }

    /// Flags beat the environment's variables, which beat the file.
    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r2v.toml");
        let path = file.to_str().unwrap();
        std::fs::write(&file, "workers = 3\nauth = false\nmax_attempts = 5\n").unwrap();
        let Command::Serve(args) = parsed(&["r2v", "serve", "--config", path, "--workers", "2"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(args.workers, Some(2), "the flag wins");
        assert_eq!(args.max_attempts, Some(5), "the file beats the default");
        assert!(args.no_auth, "auth = false stands for --no-auth");
    }
}
