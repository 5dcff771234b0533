//! Builds the C test fixtures (broken plugins) as shared libraries in OUT_DIR and tells the tests
//! where they are (`GC_FIXTURES_DIR`).

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let include = manifest.join("../crates/plugin/include");
    for name in ["bad_abi", "no_symbols", "bad_utf8"] {
        let source = manifest.join("fixtures").join(format!("{name}.c"));
        let library = out.join(format!("lib{name}.{}", std::env::consts::DLL_EXTENSION));
        let status = cc::Build::new()
            .get_compiler()
            .to_command()
            .args(["-shared", "-fPIC", "-std=c99", "-O1"])
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
        println!("cargo:rerun-if-changed=fixtures/{name}.c");
    }
    println!("cargo:rerun-if-changed=../crates/plugin/include/gc_plugin.h");
    println!("cargo:rustc-env=GC_FIXTURES_DIR={}", out.display());
}
