//! The `callstream` binary: parses the command line and runs a subcommand of the library.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use callstream::cli::offline::{self, Input};
use callstream::cli::{demo, generate, service, Cli, Command, ConfigCommand, TopicsCommand};
use callstream::topics::TopicNames;

/// Exit status for an I/O error, as grep uses it (1 means "something was rejected").
const EXIT_IO_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Process(args) => {
            let result = Input::open_all(&args.files).and_then(|mut inputs| {
                let stdout = io::stdout();
                let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
                offline::process(
                    &mut inputs,
                    &mut out,
                    args.core.processor_config(),
                    &TopicNames::default(),
                )
            });
            match result {
                Ok(totals) => {
                    eprintln!("{}", totals.summary());
                    ExitCode::SUCCESS
                }
                Err(e) => io_failure(e),
            }
        }
        Command::Validate(args) => {
            let result = Input::open_all(&args.files).and_then(|mut inputs| {
                let stdout = io::stdout();
                let mut out = stdout.lock();
                offline::validate(&mut inputs, &mut out, args.core.processor_config())
            });
            match result {
                Ok(totals) if totals.rejected == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => io_failure(e),
            }
        }
        Command::Run(args) => service::run(args),
        Command::Demo(args) => demo::demo(args),
        Command::Topics {
            command: TopicsCommand::Create(args),
        } => service::topics_create(args),
        Command::Generate(args) => generate::generate(args),
        Command::Config {
            command: ConfigCommand::Check(args),
        } => service::config_check(args),
    }
}

fn io_failure(e: io::Error) -> ExitCode {
    // A closed pipe (`callstream process | head`) is how a reader says it has seen enough.
    if e.kind() == io::ErrorKind::BrokenPipe {
        return ExitCode::SUCCESS;
    }
    let _ = io::stdout().flush();
    eprintln!("callstream: {e}");
    ExitCode::from(EXIT_IO_ERROR)
}
