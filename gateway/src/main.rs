//! The `mark` binary: logging, then each subcommand of `mark_gateway::cli` run by the library;
//! a failure is printed and turned into its exit code (`mark_gateway::failure`).

use std::process::ExitCode;

use clap::Parser;
use mark_gateway::app::commands;
use mark_gateway::app::serve_cmd::Serve;
use mark_gateway::cli::{Cli, Cmd, LogFormat};
use mark_gateway::failure::Failure;
use mark_gateway::sim::cli::SimulateError;

fn main() -> ExitCode {
    // `mark serve --config FILE`: the file's keys as flags before the command line's own
    let args = match mark_gateway::app::config_file::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            let e = Failure::config(e);
            eprintln!("{e}");
            return e.exit_code();
        }
    };
    let cli = Cli::parse_from(args);
    // processes this one starts (the local cloud's workers) log the same way
    if cli.log_format == LogFormat::Json {
        std::env::set_var("MARK_LOG_FORMAT", "json");
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ort=warn".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `mark policy check` printed its verdict per kind already
            if !matches!(e, Failure::Refused(_)) {
                eprintln!("{e}");
            }
            e.exit_code()
        }
    }
}

fn run(cmd: Cmd) -> Result<(), Failure> {
    match cmd {
        Cmd::Serve(a) => Serve::from_args(a)?.run(),
        Cmd::Worker {
            model_repo,
            listen,
            start_delay,
            ort_lib,
            imds_endpoint,
            notice_poll_secs,
        } => commands::worker(
            model_repo,
            listen,
            start_delay,
            ort_lib,
            imds_endpoint.map(|e| (e, notice_poll_secs)),
        ),
        Cmd::Lambda {
            model_repo,
            ort_lib,
        } => commands::lambda(model_repo, ort_lib),
        Cmd::Profile(a) => mark_gateway::app::profile_cmd::run(a),
        Cmd::Policy(c) => mark_gateway::app::policy_cmd::run(c),
        Cmd::Simulate(a) => mark_gateway::sim::cli::run(a).map_err(|e| match e {
            SimulateError::Input(reason) => Failure::Config(reason),
            e @ SimulateError::Output(_) => Failure::failed(e),
        }),
        Cmd::Bench(a) => commands::bench(a),
        Cmd::Repo(mark_gateway::cli::RepoCmd::Push { dir, url, endpoint }) => {
            commands::repo_push(&dir, &url, endpoint.as_deref())
        }
        Cmd::Package(mark_gateway::cli::PackageCmd::Lambda {
            out,
            model_repo,
            mark_binary,
            ort_lib,
        }) => mark_gateway::deploy::package_lambda(
            &out,
            &model_repo,
            mark_binary.as_deref(),
            ort_lib.as_deref(),
        ),
        Cmd::Package(mark_gateway::cli::PackageCmd::Worker {
            model_repo,
            out,
            mark_binary,
            ort_lib,
        }) => mark_gateway::deploy::package_worker(
            &model_repo,
            out.as_deref(),
            mark_binary.as_deref(),
            ort_lib.as_deref(),
        ),
        Cmd::Deploy { config, dry_run } => mark_gateway::deploy::deploy(&config, dry_run),
        Cmd::Config(mark_gateway::cli::ConfigCmd::PrintDefault) => {
            print!("{}", mark_gateway::app::config_file::print_default());
            Ok(())
        }
    }
}
