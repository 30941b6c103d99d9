//! Fuzz-case bodies for the `batch` protocol, shared by the cargo-fuzz
//! target (`fuzz/fuzz_targets/batch.rs`) and a stable test that replays
//! the committed corpus in CI.

use revstore::{MemoryBackend, Store};
use serde_json::Value;

use crate::batch;

/// Runs arbitrary bytes through a whole `batch` session on a memory store
/// and through the request decoder, panicking only when a property breaks:
/// the session never fails on its input, answers every non-blank line with
/// exactly one line, and every answer is a JSON object with a boolean `ok`
/// (and an `error` object when it is false).
pub fn batch_case(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        if let Ok(text) = std::str::from_utf8(line) {
            // Must not panic, whatever it decides.
            let _ = batch::decode_request(text);
        }
    }
    let store = Store::open(MemoryBackend::new());
    let mut output = Vec::new();
    if let Err(e) = batch::run(&store, data, &mut output) {
        panic!("a batch session failed on its input: {e}");
    }
    // An empty segment after the last newline is blank too, so it needs no
    // case of its own.
    let expected = data
        .split(|&b| b == b'\n')
        .filter(|line| !matches!(std::str::from_utf8(line), Ok(t) if t.trim().is_empty()))
        .count();
    let text = match String::from_utf8(output) {
        Ok(text) => text,
        Err(e) => panic!("the answers are not UTF-8: {e}"),
    };
    let answers: Vec<&str> = text.lines().collect();
    assert_eq!(
        answers.len(),
        expected,
        "one answer per non-blank line:\n{text}"
    );
    for answer in answers {
        let value: Value = match serde_json::from_str(answer) {
            Ok(v) => v,
            Err(e) => panic!("answer {answer:?} is not JSON: {e}"),
        };
        match value.get("ok") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => assert!(
                value.get("error").is_some_and(Value::is_object),
                "a failed answer carries an error object: {answer}"
            ),
            _ => panic!("answer without a boolean ok: {answer}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/batch")
    }

    #[test]
    fn the_committed_corpus_replays() {
        let mut ran = 0;
        for entry in std::fs::read_dir(corpus()).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| batch_case(&data));
            assert!(outcome.is_ok(), "corpus file {} fails", path.display());
            ran += 1;
        }
        assert!(ran >= 10, "the corpus has {ran} files");
    }

    #[test]
    fn random_and_mutated_inputs() {
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(corpus())
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let soak: usize = std::env::var("REVSTORE_SOAK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        for _ in 0..2000 * soak {
            let mut data = seeds[next() as usize % seeds.len()].clone();
            for _ in 0..(next() % 4) {
                if data.is_empty() {
                    data.push(next() as u8);
                    continue;
                }
                let at = next() as usize % data.len();
                match next() % 3 {
                    0 => data[at] = next() as u8,
                    1 => data.insert(at, next() as u8),
                    _ => {
                        data.remove(at);
                    }
                }
            }
            batch_case(&data);
        }
    }
}
