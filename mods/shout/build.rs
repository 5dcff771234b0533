//! Compiles `shout.c` into a loadable plugin (`libshout.so`) and tells the crate where it is
//! (`LIBRARY`), for tests and packaging.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let library = out_dir.join(gc_plugin::build::library_file_name("shout"));
    gc_plugin::build::compile_c_plugin(&manifest.join("shout.c"), &library);
    println!("cargo:rustc-env=GC_SHOUT_LIBRARY={}", library.display());
}
