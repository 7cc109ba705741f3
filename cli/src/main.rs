//! `cairn`: backups for Kubernetes and OpenShift control planes.
//!
//! This binary parses arguments, opens repositories with the right key role, runs one command
//! and prints its result; the engine lives in `cairn-store` and `cairn-format`.

mod alloc;
mod args;
mod commands;
mod credentials;
mod examples;
mod exit;
mod hints;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    alloc::tune();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = argv.iter().any(|a| a == "--json");
    let cli = match args::Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => return exit::report_clap(hints::clap_error(e, &argv), json),
    };
    init_logging(cli.global.verbose, cli.global.quiet, cli.global.json);
    output::set_json_stderr(cli.global.json);
    if cli.global.json {
        // A panic's own report is a JSON line too (the error object follows it).
        std::panic::set_hook(Box::new(|info| {
            output::error(format_args!("panic: {info}"));
        }));
    }
    // Trees are walked recursively; a large stack keeps the depth limit, not the stack, the
    // bound a hostile repository meets.
    let worker = std::thread::Builder::new()
        .name("cairn".into())
        .stack_size(256 << 20)
        .spawn(move || commands::run(cli));
    let result = match worker {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic); please report it"))),
        Err(e) => Err(anyhow::anyhow!("starting the main thread: {e}")),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => exit::report(&e, json).into(),
    }
}

fn init_logging(verbose: u8, quiet: bool, json: bool) {
    use tracing_subscriber::EnvFilter;
    // kube's client logs every failed request at ERROR itself; cairn retries and reports
    // them (see -v for kube's own lines).
    let default = match (quiet, verbose) {
        (true, _) => "error,kube_client=off".to_string(),
        // Object store requests being retried are said as they happen (as restic does), so a
        // command riding out an outage is not silent for minutes; not amid --json output.
        (false, 0) if !json => format!(
            "warn,kube_client=off,object_store::client::retry=info,object_store::client::get=info,{}=info",
            cairn_store::backend::RETRY_LOG
        ),
        (false, 0) => "warn,kube_client=off".to_string(),
        (false, 1) => "info".to_string(),
        (false, 2) => "debug".to_string(),
        _ => "trace".to_string(),
    };
    let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time();
    if json {
        // With --json, stderr is JSON lines: `{"level": "WARN", "message": …}` events, and a
        // failure's `{"error": …}` last.
        fmt.json().flatten_event(true).init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
