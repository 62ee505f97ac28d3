//! `eddy`: one binary for every role and for the client. This file only parses
//! arguments and hands over to the role crates; the client is public so that
//! the load generator (`bench/loadgen`) speaks to the API the same way.
#![forbid(unsafe_code)]

pub mod client;
mod local;
pub mod project;
mod roles;
mod telemetry;

pub use roles::module_validator;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "eddy",
    version,
    about = "Eddy: a serverless platform for WebAssembly processors"
)]
pub struct Cli {
    #[command(flatten)]
    logs: telemetry::LogArgs,
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
    /// Create a processor project (eddy.toml, a handler, its tests) in a
    /// new folder.
    New(project::NewArgs),
    /// Build the project's component with its language's toolchain
    /// (installed when missing) and check its imports.
    Build(project::DirArgs),
    /// Run the project's [[tests]] cases on its component, in the sandbox
    /// the workers use.
    Test(project::TestArgs),
    /// Print the WIT of the eddy:processor world, for toolchains.
    Wit,
    /// Run a worker: consume streams, run invocations, complete them.
    Worker(roles::WorkerArgs),
    /// Run the controller: warm capacity per function, assignments, replicas.
    Controller {
        #[command(flatten)]
        controller: roles::ControllerArgs,
        #[command(flatten)]
        process: roles::ProcessArgs,
        /// The admin key `/status` asks for (it names every tenant's
        /// functions); without it `/status` is refused. `/replicas` is open.
        #[arg(long, env = "EDDY_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        #[command(flatten)]
        labels: roles::LabelArgs,
        #[command(flatten)]
        records: roles::EnqueueArgs,
    },
    /// Run the HTTP gateway.
    Gateway {
        #[command(flatten)]
        gateway: roles::GatewayArgs,
        #[command(flatten)]
        common: roles::CommonArgs,
    },
    /// Run every role in one process, with a private redis-server when
    /// REDIS_URL is unset.
    Up(roles::UpArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

/// Parses the command line and runs what it names.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let role = match &cli.command {
        Command::Worker(_) => Some("worker"),
        Command::Controller { .. } => Some("controller"),
        Command::Gateway { .. } => Some("gateway"),
        Command::Up(_) => Some("up"),
        _ => None,
    };
    // Held to the end: dropping it flushes the spans still buffered.
    let _telemetry = telemetry::init(role.unwrap_or("client"), role.is_some(), &cli.logs);
    let result = match cli.command {
        Command::Run(args) => local::run(args),
        Command::Check(args) => local::check(args),
        Command::New(args) => project::new(args),
        Command::Build(args) => project::build(args),
        Command::Test(args) => project::test(args),
        Command::Wit => {
            print!("{}", project::WIT);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Worker(args) => roles::worker(args),
        Command::Controller {
            controller,
            process,
            admin_key,
            labels,
            records,
        } => roles::controller(controller, process, admin_key, labels, records),
        Command::Gateway { gateway, common } => roles::gateway(gateway, common),
        Command::Up(args) => roles::up(args),
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

/// `docs/configuration.md`: the `--help` of every server role, so that the
/// page says exactly what the binary reads.
pub fn configuration_doc() -> String {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    let mut doc = String::from(
        "# Configuration\n\n\
         Every setting of every role, as `eddy <role> --help` prints it: each option\n\
         also reads the environment variable in its `[env: ...]`. This page is\n\
         generated from the binary (`EDDY_BLESS=1 cargo test -p eddy-cli configuration`)\n\
         and a test fails when the two differ. The limits a function may ask for and the\n\
         operator's ceilings over them are explained in `docs/api.md`; how to run the\n\
         roles in `docs/operations.md`.\n",
    );
    for role in ["gateway", "worker", "controller", "up"] {
        let Some(sub) = cmd.find_subcommand_mut(role) else {
            continue;
        };
        // Values from this process's environment stay out of the page.
        let mut sub = sub.clone().mut_args(|a| a.hide_env_values(true));
        let help = sub.render_long_help().to_string();
        let help: Vec<&str> = help.lines().map(str::trim_end).collect();
        doc.push_str(&format!(
            "\n## `eddy {role}`\n\n```text\n{}\n```\n",
            help.join("\n")
        ));
    }
    doc
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_configuration_doc_is_the_roles_help() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let want = super::configuration_doc();
        if std::env::var_os("EDDY_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/configuration.md is not what `eddy <role> --help` prints: \
             regenerate it with `EDDY_BLESS=1 cargo test -p eddy-cli configuration`"
        );
    }
}
