use clap::Parser;

fn main() {
    // Die quietly when a pipe reader (head, less) goes away, as Unix tools do.
    // SAFETY: called before any thread starts; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = walb_tool::Cli::parse();
    walb_core::logging::init();
    if let Err(e) = walb_tool::run(cli) {
        eprintln!("walb-tool: error: {e:#}");
        std::process::exit(1);
    }
}
