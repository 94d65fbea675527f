use clap::Parser;

fn main() {
    let cli = walb_controller::tool::Cli::parse();
    if let Err(e) = walb_controller::tool::run(cli) {
        eprintln!("walb-tool: error: {e:#}");
        std::process::exit(1);
    }
}
