//! `synod`: the one binary of the synod data store.
//!
//! `synod up` starts a local cluster, `synod server` runs one node of a deployment, `synod
//! sim` runs the deterministic simulator, `synod bench` the benchmarks and `synod check` the
//! history checker.

mod bench;
mod bench_check;
mod bench_kv;
mod bench_raft;
mod bench_wal;
mod check;
mod harness;
mod history_lines;
mod lab;
mod lab_partition;
mod lab_skew;
mod nemesis;
mod raw_disk;
mod scenarios;
mod server;
mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "synod", version, about = "synod: a distributed data store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a local cluster on loopback (3 nodes by default) and keep it running.
    Up(server::UpArgs),
    /// Run one node of a deployment from its configuration file.
    Server(server::ServerArgs),
    /// Run a simulated cluster under faults, from one seed or a sweep of seeds.
    Sim(sim::SimArgs),
    /// Print throughput figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Check a recorded history against consistency models (or generate one).
    Check(check::CheckArgs),
    /// Test real server processes under kill, pause and partition faults; check the history.
    Nemesis(nemesis::NemesisArgs),
    /// Experiments on a live cluster that measure what each consistency level costs.
    #[command(subcommand)]
    Lab(lab::LabCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => server::run_up(&args),
        Command::Server(args) => server::run_server(&args),
        Command::Sim(args) => sim::run(&args),
        Command::Bench(command) => bench::run(command),
        Command::Check(args) => check::run(&args),
        Command::Nemesis(args) => nemesis::run(&args),
        Command::Lab(command) => lab::run(&command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("synod: {error:#}");
            ExitCode::from(2)
        }
    }
}
