//! The `callstream` binary: parses the command line and runs a subcommand of the library.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use callstream::cli::offline::{self, Input};
use callstream::cli::{
    dead_letters, demo, generate, service, Cli, Command, ConfigCommand, DeadLettersCommand,
    TopicsCommand,
};
use callstream::topics::TopicNames;

// librdkafka allocates each produced message on the service loop's thread and frees it on the
// delivery-report thread; glibc's per-thread caches serve that pattern badly (nearly every malloc
// and free takes an arena lock). With `override`, mimalloc also serves librdkafka's malloc and free.
// Alternating pairs against glibc favoured it in 6 of 7 sets, median rate ratio 1.10; the shipped
// set-up alone 1.06, 0.93 and 1.04 (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// On Linux mimalloc commits its first arena (1 GiB) up front by default, and then asks for
// transparent huge pages for all of it: peak RSS over a 600,000-notification backlog was ~93 MiB,
// against 50-53 MiB on glibc and 62-64 MiB with arenas committed on demand. That default must be
// set before the first allocation reserves the arena, hence `.preinit_array`, which glibc runs
// before any constructor (musl does not run it, hence `gnu`). `mi_option_set_default` leaves
// `MIMALLOC_ARENA_EAGER_COMMIT` in the environment in charge.
#[cfg(all(feature = "mimalloc", target_os = "linux", target_env = "gnu"))]
#[used]
#[link_section = ".preinit_array"]
static MIMALLOC_DEFAULTS: extern "C" fn() = mimalloc_defaults;

#[cfg(all(feature = "mimalloc", target_os = "linux", target_env = "gnu"))]
extern "C" fn mimalloc_defaults() {
    // `mi_option_arena_eager_commit` in mimalloc 2.x's `mi_option_t` (the `v2` feature pins 2.x;
    // tests/allocator.rs fails if this stops taking effect).
    const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
    extern "C" {
        fn mi_option_set_default(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // SAFETY: writes one entry of mimalloc's static option table; nothing else runs yet.
    unsafe { mi_option_set_default(ARENA_EAGER_COMMIT, 0) }
}

/// Exit status for an I/O error, as grep uses it (1 means "something was rejected").
const EXIT_IO_ERROR: u8 = 2;

fn main() -> ExitCode {
    forget_empty_environment();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let note = environment_note(&error);
            // Prints the usage or the error, with clap's exit status (0 for --help).
            let _ = error.print();
            if let Some(note) = note {
                eprintln!("{note}");
            }
            return ExitCode::from(error.exit_code() as u8);
        }
    };
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
        Command::DeadLetters {
            command: DeadLettersCommand::Replay(args),
        } => dead_letters::replay_dead_letters(args),
        Command::Config {
            command: ConfigCommand::Check(args),
        } => service::config_check(args),
    }
}

/// An empty `CALLSTREAM_*` variable counts as unset, as deployment templates write them.
fn forget_empty_environment() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(name, value)| {
            name.to_str().is_some_and(|n| n.starts_with("CALLSTREAM_")) && value.is_empty()
        })
        .map(|(name, _)| name)
        .collect();
    for name in empty {
        // Before any other thread exists.
        std::env::remove_var(name);
    }
}

/// For a value clap refused that came from an environment variable rather than the command
/// line, a note naming the variable: clap's message names only the flag.
fn environment_note(error: &clap::Error) -> Option<String> {
    let clap::error::ContextValue::String(invalid) =
        error.get(clap::error::ContextKind::InvalidArg)?
    else {
        return None;
    };
    // "--guarantee <GUARANTEE>": the flag's long name.
    let long = invalid.split_whitespace().next()?.strip_prefix("--")?;
    let on_command_line =
        std::env::args().any(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
    if on_command_line {
        return None;
    }
    let command = <Cli as clap::CommandFactory>::command();
    let env = find_env(&command, long)?;
    std::env::var_os(&env).map(|_| format!("(the value comes from the environment variable {env})"))
}

/// The environment variable of the flag `--long` in any subcommand.
fn find_env(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .and_then(|e| e.to_str().map(str::to_owned))
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| find_env(sub, long))
        })
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
