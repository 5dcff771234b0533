//! The `shout` example plugin is written in C (`shout.c`); this crate only builds it. The built
//! library's path is [`LIBRARY`]: copy that file into a client's mods directory to use it.

/// Where the build put `libshout.so`.
pub const LIBRARY: &str = env!("GC_SHOUT_LIBRARY");
