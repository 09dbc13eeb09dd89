//! Property tests ("fuzzing") of the two parsers that take input from
//! outside: the record splitter and the frame decoder. Any input must give
//! its bytes back or a clean error, never a panic. `tests/corpus/` keeps
//! inputs that once mattered; proptest keeps any failing case it finds in
//! `tests/proptest-regressions/`.

use proptest::prelude::*;

use viasock::core::protocol::{self, Kind};
use viasock::core::records::{Splitter, Terminator};

const PATTERNS: [&str; 5] = ["", "^$", "^EOS$", "a", "^\\s*$"];

/// Splits `input` fed in pieces of the given sizes; returns the records
/// taken, what `finish` said, and the records it completed.
fn split(pattern: &str, input: &[u8], cuts: &[usize]) -> (Vec<u8>, Result<usize, usize>, Vec<u8>) {
    let mut s = Splitter::new(Terminator::new(pattern).unwrap());
    let mut taken = Vec::new();
    let mut at = 0;
    let mut cuts = cuts.iter().cycle();
    while at < input.len() {
        let n = (*cuts.next().unwrap()).clamp(1, input.len() - at);
        s.push(&input[at..at + n]);
        let k = s.complete();
        s.take_into(k, &mut taken);
        at += n;
    }
    let mut tail = Vec::new();
    let fin = s.finish().map_err(|u| u.bytes);
    let k = s.complete();
    s.take_into(k, &mut tail);
    (taken, fin, tail)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Splitting then joining gives the input back (plus the `\n` a last
    /// unterminated line gets), or says how many bytes were unfinished.
    #[test]
    fn splitting_then_joining_gives_the_input_back(
        input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b'\r'), any::<u8>()], 0..400),
        cuts in proptest::collection::vec(1usize..50, 1..8),
        p in 0usize..PATTERNS.len(),
    ) {
        let (mut joined, fin, tail) = split(PATTERNS[p], &input, &cuts);
        joined.extend_from_slice(&tail);
        let mut expected = input.clone();
        if !expected.is_empty() && !expected.ends_with(b"\n") {
            expected.push(b'\n');
        }
        match fin {
            Ok(_) => prop_assert_eq!(joined, expected),
            Err(unfinished) => {
                prop_assert!(!PATTERNS[p].is_empty(), "line mode never leaves a record unfinished");
                prop_assert_eq!(joined.len() + unfinished, expected.len());
                prop_assert_eq!(&expected[..joined.len()], &joined[..]);
            }
        }
    }

    /// Any bytes decode to frames or a clean error.
    #[test]
    fn any_bytes_decode_to_frames_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut at = 0;
        while let Ok(Some((f, used))) = protocol::decode(&bytes[at..]) {
            prop_assert!(used >= protocol::HEADER_LEN);
            let _ = protocol::parse_hello(&f);
            let _ = protocol::parse_welcome(&f);
            let _ = protocol::parse_status(&f);
            at += used;
        }
        // The blocking reader agrees and never panics either.
        let mut cursor = std::io::Cursor::new(&bytes);
        while let Ok(Some(_)) = protocol::read_frame(&mut cursor) {}
    }

    /// Encoding then decoding gives the frames back.
    #[test]
    fn frames_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..10)) {
        let mut buf = Vec::new();
        for p in &payloads {
            protocol::encode(Kind::Output, p, &mut buf);
        }
        let mut at = 0;
        for p in &payloads {
            let (f, used) = protocol::decode(&buf[at..]).unwrap().unwrap();
            prop_assert_eq!(f.kind, Kind::Output);
            prop_assert_eq!(&f.payload, p);
            at += used;
        }
        prop_assert_eq!(at, buf.len());
    }
}

/// The corpus: every file is run through both parsers, byte at a time and
/// whole, with every pattern.
#[test]
fn corpus_inputs_stay_well_behaved() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        for p in PATTERNS {
            let (a, fa, ta) = split(p, &bytes, &[1]);
            let (b, fb, tb) = split(p, &bytes, &[bytes.len().max(1)]);
            assert_eq!((a, fa, ta), (b, fb, tb), "{:?} {p:?}", e.path());
        }
        let _ = protocol::decode(&bytes);
        let _ = protocol::read_frame(&mut std::io::Cursor::new(&bytes));
        seen += 1;
    }
    assert!(seen >= 6);
}

#[test]
fn corpus_frames_decode_as_expected() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (f, _) = protocol::decode(&read("frame-data.bin")).unwrap().unwrap();
    assert_eq!((f.kind, &f.payload[..]), (Kind::Data, &b"hello"[..]));
    assert!(protocol::decode(&read("frame-too-long.bin")).is_err());
    let (f, _) = protocol::decode(&read("frame-bad-status.bin"))
        .unwrap()
        .unwrap();
    assert!(protocol::parse_status(&f).is_err());
    let (f, _) = protocol::decode(&read("frame-hello-future-version.bin"))
        .unwrap()
        .unwrap();
    assert!(
        protocol::parse_hello(&f).is_err(),
        "another version is refused"
    );
}
