//! `eddy`: one binary for every role and for the client. This file only parses
//! arguments and hands over to the role crates.
#![forbid(unsafe_code)]

mod bench;
mod client;
mod local;
mod roles;
mod telemetry;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "eddy",
    version,
    about = "Eddy: a serverless platform for WebAssembly processors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a processor locally (`eddy run <module.wasm>`), or show a run
    /// (`eddy run <run-id> [--watch]`).
    Run(local::RunArgs),
    /// Validate a module: is it an eddy:processor component?
    Check(local::CheckArgs),
    /// Run a worker: consume streams, run invocations, complete them.
    Worker(roles::WorkerArgs),
    /// Run the controller: warm capacity per function, assignments, replicas.
    Controller {
        #[command(flatten)]
        controller: roles::ControllerArgs,
        /// Redis to use.
        #[arg(long, env = "REDIS_URL")]
        redis_url: Option<String>,
        /// The admin key `/status` asks for (it names every tenant's
        /// functions); without it `/status` is refused. `/replicas` is open.
        #[arg(long, env = "EDDY_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        #[command(flatten)]
        labels: roles::LabelArgs,
    },
    /// Run the HTTP gateway.
    Gateway {
        #[command(flatten)]
        gateway: roles::GatewayArgs,
        #[command(flatten)]
        worker: roles::WorkerArgs,
    },
    /// Run every role in one process, with a private redis-server when
    /// REDIS_URL is unset.
    Up(roles::UpArgs),
    /// Load-generate against a running gateway and report what it measured.
    Bench(bench::BenchArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let role = match &cli.command {
        Command::Worker(_) => Some("worker"),
        Command::Controller { .. } => Some("controller"),
        Command::Gateway { .. } => Some("gateway"),
        Command::Up(_) => Some("up"),
        _ => None,
    };
    // Held to the end: dropping it flushes the spans still buffered.
    let _telemetry = telemetry::init(role.unwrap_or("client"), role.is_some());
    let result = match cli.command {
        Command::Run(args) => local::run(args),
        Command::Check(args) => local::check(args),
        Command::Worker(args) => roles::worker(args),
        Command::Controller {
            controller,
            redis_url,
            admin_key,
            labels,
        } => roles::controller(controller, redis_url, admin_key, labels),
        Command::Gateway { gateway, worker } => roles::gateway(gateway, worker),
        Command::Up(args) => roles::up(args),
        Command::Bench(args) => bench::run(args),
        Command::Client(cmd) => client::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
