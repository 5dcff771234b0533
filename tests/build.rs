//! Builds the C test fixtures (broken plugins) as shared libraries in OUT_DIR and tells the tests
//! where they are (`GC_FIXTURES_DIR`).

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for name in [
        "bad_abi",
        "old_abi",
        "no_symbols",
        "bad_utf8",
        "stall_on_disconnect",
        "slow_hooks",
        "runs_on_load",
    ] {
        let source = manifest.join("fixtures").join(format!("{name}.c"));
        let library = out.join(gc_plugin::build::library_file_name(name));
        gc_plugin::build::compile_c_plugin(&source, &library);
    }
    println!("cargo:rustc-env=GC_FIXTURES_DIR={}", out.display());
}
