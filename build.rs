//! Compiles proto/csi.proto into tonic/prost code with a pure-Rust protobuf
//! compiler (protox), so building needs nothing but cargo.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi.proto");
    // Packed relative relocations (DT_RELR; glibc 2.36+, LLD or GNU ld
    // 2.38+): the loader reads about 10 KiB of them at start instead of
    // 1 MiB, which every node plugin would keep resident.
    let target_is = |key: &str, value: &str| std::env::var(key).is_ok_and(|v| v == value);
    let linux_gnu = target_is("CARGO_CFG_TARGET_OS", "linux") && target_is("CARGO_CFG_TARGET_ENV", "gnu");
    if linux_gnu {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // The functions the node plugin runs, first in the release binary
    // (link/hot-code.ld, made by scripts/hot-code): together they fill about
    // 2 MiB of pages instead of touching most of 8 MiB of code.
    println!("cargo:rerun-if-changed=link/hot-code.ld");
    if linux_gnu && std::env::var("PROFILE").is_ok_and(|p| p == "release") {
        let script = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("link/hot-code.ld");
        if script.exists() {
            println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
        } else {
            println!(
                "cargo:warning=no link/hot-code.ld: the node plugin's code is not placed first (scripts/hot-code makes it)"
            );
        }
    }
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).open_file("csi.proto")?;
    // The encoded set keeps custom options (csi_secret, alpha_*), which the
    // prost_types form drops; tests read it to check the wire shape.
    let encoded = compiler.encode_file_descriptor_set();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("csi_descriptor.bin"), &encoded)?;
    let fds = prost_types::FileDescriptorSet::decode(encoded.as_slice())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
