//! `walbc`: the walb-rs controller.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = walb_controller::walbc::cli::Cli::parse();
    walb_core::logging::init();
    // One command calls the same servers again and again: one connection each.
    walb_proto::wire::keep_connections();
    if let Err(e) = walb_controller::walbc::cli::run(cli).await {
        eprintln!("walbc: error: {e:#}");
        std::process::exit(1);
    }
}
