//! The frames of the heartbeat port, both directions: no input panics, and each frame that
//! parses is written back as it was read (`gc_fuzz::frame_round_trip`).

#![no_main]

use gc_fuzz::frame_round_trip;
use gc_protocol::{HeartbeatPing, HeartbeatReply, HeartbeatRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    frame_round_trip::<HeartbeatPing>(line);
    frame_round_trip::<HeartbeatReply>(line);
    // What a GC/4 client reads there: `Ping`, or the server's `Stopping`.
    frame_round_trip::<HeartbeatRequest>(line);
});
