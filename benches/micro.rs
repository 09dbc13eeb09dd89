//! Micro-benchmarks of the two hot loops of a server: cutting input and
//! output into records, and encoding and decoding frames. Run with
//! `cargo bench --bench micro`; throughput is reported in bytes/s.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use viasock::core::protocol::{self, Kind};
use viasock::core::records::{Splitter, Terminator};

/// 1 MiB of short lines, and of blank-line records of a few lines each.
fn inputs() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut lines = Vec::new();
    let mut i = 0u64;
    while lines.len() < 1 << 20 {
        lines.extend_from_slice(format!("token {i} of a short sentence\n").as_bytes());
        i += 1;
    }
    let mut blocks = Vec::new();
    while blocks.len() < 1 << 20 {
        blocks.extend_from_slice(b"The\tDT\ncat\tNN\nsat\tVBD\n.\t.\n\n");
    }
    vec![("lines", "", lines), ("blank-line records", "^$", blocks)]
}

fn splitter(c: &mut Criterion) {
    let mut group = c.benchmark_group("splitter");
    for (name, pattern, data) in inputs() {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("64 KiB chunks", name), &data, |b, data| {
            let term = Terminator::new(pattern).unwrap();
            let mut out = Vec::with_capacity(data.len());
            b.iter(|| {
                let mut s = Splitter::new(term.clone());
                out.clear();
                for chunk in data.chunks(64 * 1024) {
                    let n = s.push(chunk);
                    s.take_into(n, &mut out);
                }
                black_box(out.len())
            });
        });
    }
    group.finish();
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frames");
    let payload = vec![b'x'; 64 * 1024];
    let mut encoded = Vec::new();
    for _ in 0..16 {
        protocol::encode(Kind::Data, &payload, &mut encoded);
    }
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode 16 x 64 KiB", |b| {
        let mut out = Vec::with_capacity(encoded.len());
        b.iter(|| {
            out.clear();
            for _ in 0..16 {
                protocol::encode(Kind::Data, black_box(&payload), &mut out);
            }
            black_box(out.len())
        });
    });
    group.bench_function("decode 16 x 64 KiB", |b| {
        b.iter(|| {
            let mut at = 0;
            let mut n = 0;
            while let Some((f, used)) = protocol::decode(black_box(&encoded[at..])).unwrap() {
                n += black_box(f.payload).len();
                at += used;
            }
            black_box(n)
        });
    });
    group.finish();
}

criterion_group!(benches, splitter, frames);
criterion_main!(benches);
