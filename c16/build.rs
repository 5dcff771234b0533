//! Compiles `16.c` into the static library `libgc16.a` (matching `links = "gc16"`).
//!
//! Warnings: `-Wall -Wextra` (plus a few stricter GCC/Clang checks where the compiler has them)
//! are always on and show up as cargo warnings; set `GC16_WERROR=1` to turn them into errors.
//! Dependents can find `c16.h` through the `DEP_GC16_INCLUDE` environment variable.

use std::env;
use std::path::PathBuf;

const SOURCE: &str = "16.c";
const HEADER: &str = "c16.h";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GC16_WERROR");

    let werror = env::var("GC16_WERROR").is_ok_and(|v| !v.is_empty() && v != "0");

    let mut build = cc::Build::new();
    build
        .file(SOURCE)
        .include(".")
        .std("c99")
        .opt_level(3)
        .warnings(true) // -Wall
        .extra_warnings(true) // -Wextra
        .warnings_into_errors(werror);
    for flag in [
        "-Wpedantic",
        "-Wconversion",
        "-Wshadow",
        "-Wstrict-prototypes",
        "-Wmissing-prototypes",
        "-Wcast-qual",
    ] {
        build.flag_if_supported(flag);
    }
    build.compile("gc16");

    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:include={}", manifest_dir.display());
}
