//! For the build scripts of plugins written in C (feature `build`): compile one C file against
//! `gc_plugin.h` into a library the hosts can load.
//!
//! ```no_run
//! // build.rs of a C plugin crate
//! let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
//! let library = out.join(gc_plugin::build::library_file_name("shout"));
//! gc_plugin::build::compile_c_plugin("shout.c".as_ref(), &library);
//! ```

use std::path::{Path, PathBuf};

/// The directory that holds `gc_plugin.h`.
pub fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// The file name of the plugin library called `name` on this platform (`libname.so` on Linux),
/// as the hosts' `mods/` directories expect it.
pub fn library_file_name(name: &str) -> String {
    format!(
        "{}{name}.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    )
}

/// Compiles `source` into the shared library `library` with the C compiler the `cc` crate finds
/// (C99, `-O2`, `-Wall -Wextra`, the header on the include path), and tells cargo to run the
/// build script again when the source or the header changes.
///
/// # Panics
///
/// When the compiler cannot be run or fails: that is how a build script reports an error, and
/// the message names the file.
#[allow(
    clippy::print_stdout,
    reason = "a build script tells cargo what to watch on standard output"
)]
pub fn compile_c_plugin(source: &Path, library: &Path) {
    let header = include_dir();
    let status = cc::Build::new()
        .get_compiler()
        .to_command()
        .args(["-shared", "-fPIC", "-std=c99", "-O2", "-Wall", "-Wextra"])
        .arg("-I")
        .arg(&header)
        .arg(source)
        .arg("-o")
        .arg(library)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("compiling {} failed ({s})", source.display()),
        Err(e) => panic!("cannot run the C compiler for {}: {e}", source.display()),
    }
    println!("cargo:rerun-if-changed={}", source.display());
    println!(
        "cargo:rerun-if-changed={}",
        header.join("gc_plugin.h").display()
    );
}
