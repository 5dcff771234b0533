//! The frames of the connect port, both directions: no input panics, and each frame that
//! parses is written back as it was read (`gc_fuzz::frame_round_trip`).

#![no_main]

use gc_fuzz::frame_round_trip;
use gc_protocol::{ConnectPing, ConnectReply, ErrorFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    frame_round_trip::<ConnectPing>(line);
    frame_round_trip::<ConnectReply>(line);
    frame_round_trip::<ErrorFrame>(line);
});
