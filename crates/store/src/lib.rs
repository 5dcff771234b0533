//! placeholder until the store crate lands
