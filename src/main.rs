use std::process::ExitCode;

use clap::Parser;
use nave_lab::cli::{Cli, Command};
use nave_lab::{commands, device, ui};

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`nave-lab train x.yaml --list | head`), as
    // command-line tools do, instead of panicking on the next print.
    // SAFETY: restores the default action of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Usage errors exit with 2 (clap's convention); --help and --version with 0.
    let cli = Cli::parse();
    ui::set_verbosity(if cli.quiet {
        -1
    } else {
        cli.verbose.min(2) as i8
    });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole chain: "reading x.yaml: line 3: unknown key `foo`".
            eprintln!("error: {err:#}");
            // A run stopped by SIGTERM/SIGINT exits as a killed process would
            // (128 + the signal), which schedulers read as "preempted".
            match err.downcast_ref::<nave_lab::signals::Stopped>() {
                Some(stopped) => ExitCode::from(stopped.exit_code() as u8),
                None => ExitCode::from(1),
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Doctor(args) => {
            let report = device::doctor(cli.device);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            // A script can run `nave-lab --device cuda doctor` to check, before a
            // long job, that the device it wants is usable.
            cli.device.resolve()?;
            Ok(())
        }
        Command::Train(args) => commands::train::run(args, cli.device),
        Command::Status(args) => commands::status::run(args),
        Command::Audit(a) => commands::audit::run(a, cli.device),
        Command::Revise(a) => commands::revise::run(a, cli.device),
        Command::Report(a) => commands::audit::report(&a.dir, a.grid_probes),
        Command::Localize(a) => commands::localize::run(a, cli.device.resolve()?),
        Command::Explain(a) => commands::explain::run(a, cli.device.resolve()?),
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Bench(cmd) => commands::bench::run(cmd, cli.device.resolve()?),
    }
}
