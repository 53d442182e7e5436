//! Generates Rust from the .proto files. protoc comes from the protoc-bin-vendored crate, so no
//! hand-installed protoc is needed; `PROTOC` overrides it.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    println!("cargo:rerun-if-env-changed=PROTOC");
    println!("cargo:rerun-if-changed=proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    let descriptors =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("cairn_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .compile_with_config(
            config,
            &[
                "proto/unixfs.proto",
                "proto/admin.proto",
                "proto/wire.proto",
                "proto/bitswap.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
