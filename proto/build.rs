//! Compiles proto/walb.proto and proto/control.proto with protox (pure Rust; no system protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/walb.proto");
    println!("cargo:rerun-if-changed=proto/control.proto");
    let fds = protox::compile(["walb.proto", "control.proto"], ["proto"])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
