//! The frames of the callback port, both directions: no input panics, and each frame that
//! parses is written back as it was read (`gc_fuzz::frame_round_trip`).

#![no_main]

use gc_fuzz::frame_round_trip;
use gc_protocol::{Authed, CallbackReply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    frame_round_trip::<Authed>(line);
    frame_round_trip::<CallbackReply>(line);
});
