//! placeholder until the c16 crate lands
