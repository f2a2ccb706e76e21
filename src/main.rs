//! The `vigil` binary: parses the command line, sets up logging, runs the command.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vigil::cli::{Cli, LogFormat, run};

/// mimalloc rather than the system allocator: a scored request allocates and frees dozens of
/// small buffers (its parsed JSON, the window's vectors, the answer), and glibc's malloc took
/// about 15% of the serving CPU in a profile under load (`bench/http.sh`). Built without
/// transparent huge pages (`no_thp`): where the kernel compacts memory for madvised huge
/// pages, training's large arrays stalled in page faults for 0.4 to 3.6 s of system time
/// from run to run; with 4 KiB pages it is a steady 1.2 s (`bench/train.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
