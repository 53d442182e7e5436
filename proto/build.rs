//! Generates Rust from the .proto files. protoc comes from the protoc-bin-vendored crate, so no
//! hand-installed protoc is needed; `PROTOC` overrides it.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    println!("cargo:rerun-if-env-changed=PROTOC");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_with_config(config, &["proto/unixfs.proto"], &["proto"])?;
    Ok(())
}
