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
        Command::DeadLetters {
            command: DeadLettersCommand::Replay(args),
        } => dead_letters::replay_dead_letters(args),
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
