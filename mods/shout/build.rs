//! Compiles `shout.c` into a loadable plugin (`libshout.so`) with the C compiler the `cc` crate
//! finds, and tells the crate where it is (`LIBRARY`), for tests and packaging.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let source = manifest.join("shout.c");
    let include = manifest.join("../../crates/plugin/include");
    let library = out_dir.join(format!("libshout.{}", std::env::consts::DLL_EXTENSION));
    let compiler = cc::Build::new()
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        .get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra"])
        .arg("-I")
        .arg(&include)
        .arg(&source)
        .arg("-o")
        .arg(&library)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("compiling {} failed ({s})", source.display()),
        Err(e) => panic!("cannot run the C compiler: {e}"),
    }
    println!("cargo:rustc-env=GC_SHOUT_LIBRARY={}", library.display());
    println!("cargo:rerun-if-changed=shout.c");
    println!("cargo:rerun-if-changed=../../crates/plugin/include/gc_plugin.h");
}
