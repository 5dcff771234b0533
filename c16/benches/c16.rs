//! c16 against the `hex` crate on the same 1 MiB of pseudo-random bytes.
//!
//! Throughput is counted in raw bytes (1 MiB per iteration), both ways: encoding reads 1 MiB and
//! writes 2 MiB of text, decoding reads 2 MiB of text and writes 1 MiB.
//!
//! `encode`/`decode` allocate their result on every call, like `hex::encode`/`hex::decode`; the
//! `*_into` / `*_to_slice` rows reuse one output buffer.
//!
//! Run: `CARGO_TARGET_DIR=/tmp/target-c16 cargo bench -p c16 --bench c16`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SIZE: usize = 1 << 20;

/// Deterministic pseudo-random bytes (xorshift64*), so every run measures the same input.
fn input() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..SIZE)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let bytes = input();
    let c16_text = c16::encode(&bytes);
    let hex_text = hex::encode(&bytes);
    assert_eq!(c16::decode(&c16_text).as_deref(), Ok(&bytes[..]));
    assert_eq!(hex::decode(&hex_text).as_deref(), Ok(&bytes[..]));

    let mut group = c.benchmark_group("1MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));

    group.bench_function("c16 encode", |b| b.iter(|| c16::encode(black_box(&bytes))));
    group.bench_function("hex encode", |b| b.iter(|| hex::encode(black_box(&bytes))));
    group.bench_function("c16 decode", |b| {
        b.iter(|| c16::decode(black_box(&c16_text)))
    });
    group.bench_function("hex decode", |b| {
        b.iter(|| hex::decode(black_box(&hex_text)))
    });

    let mut text_buf = String::with_capacity(2 * SIZE);
    group.bench_function("c16 encode_into", |b| {
        b.iter(|| {
            text_buf.clear();
            c16::encode_into(black_box(&bytes), &mut text_buf);
        });
    });
    let mut hex_buf = vec![0u8; 2 * SIZE];
    group.bench_function("hex encode_to_slice", |b| {
        b.iter(|| hex::encode_to_slice(black_box(&bytes), &mut hex_buf));
    });
    let mut byte_buf = Vec::with_capacity(SIZE);
    group.bench_function("c16 decode_into", |b| {
        b.iter(|| {
            byte_buf.clear();
            c16::decode_into(black_box(c16_text.as_bytes()), &mut byte_buf)
        });
    });
    let mut out_buf = vec![0u8; SIZE];
    group.bench_function("hex decode_to_slice", |b| {
        b.iter(|| hex::decode_to_slice(black_box(&hex_text), &mut out_buf));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
