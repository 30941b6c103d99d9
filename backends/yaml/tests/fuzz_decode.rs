//! The decode fuzz case on stable: a few thousand pseudo-random inputs,
//! YAML-shaped inputs and mutations of valid files run through
//! `revstore_yaml::fuzzing::decode_case`, which panics on any violated
//! property (a panic, a non-`Corrupt` error, a revision out of range, the
//! header scan disagreeing with the decode, a record that does not survive
//! encoding again).

use revstore::testkit::fuzzing::random_cases;
use revstore::testkit::soak_factor;
use revstore::{Body, Patch, Precondition, Store};
use revstore_yaml::fuzzing::{decode_case, sealed, LABEL};
use revstore_yaml::YamlBackend;
use serde_json::json;
use tempfile::TempDir;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Runs one input, naming it when the case panics.
fn run(data: &[u8], what: &str) {
    if let Err(payload) = std::panic::catch_unwind(|| decode_case(data)) {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        panic!(
            "{what} fails on {:?}: {message}",
            String::from_utf8_lossy(data)
        );
    }
}

/// Files the backend itself wrote for `LABEL`: the seeds to mutate.
fn valid_files() -> Vec<Vec<u8>> {
    let dir = TempDir::new().unwrap();
    let s = Store::open(YamlBackend::open(dir.path()).unwrap());
    let (collection, name) = LABEL.split_once('/').unwrap();
    let path = dir.path().join(collection).join(format!("{name}.yaml"));
    let mut files = Vec::new();
    let bodies = [
        json!({}),
        json!({"description": "All orders", "joins": ["customers", "items"]}),
        json!({"n": -1, "f": 0.5, "big": u64::MAX, "t": true, "z": null}),
        json!({"nested": {"a": [1, [2, [3, {"b": "c"}]]], "e": {}}, "s": "multi\nline"}),
        json!({"tricky": ["yes", "1", "~", "", "- x", "a: b", "#", "'\"", "\u{feff}"]}),
    ];
    for body in bodies {
        s.replace(collection, name, body, Precondition::Any)
            .unwrap();
        files.push(std::fs::read(&path).unwrap());
    }
    s.patch(
        collection,
        name,
        &Patch::Merge(json!({"patched": 1})),
        Precondition::Any,
    )
    .unwrap();
    files.push(std::fs::read(&path).unwrap());
    s.delete(collection, name, Precondition::Any).unwrap();
    files.push(std::fs::read(&path).unwrap());
    files.push(b"revision: 0\nbody:\n  made: by hand\n".to_vec());
    files
}

const TOKENS: &[&[u8]] = &[
    b"revision: ",
    b"body:",
    b"deleted: true",
    b"digest: ",
    b"\n",
    b"\n  ",
    b"- ",
    b": ",
    b"{",
    b"}",
    b"[",
    b"]",
    b", ",
    b"&a ",
    b"*a",
    b"!tag ",
    b"!!str ",
    b"? ",
    b"|\n  ",
    b">-\n  ",
    b"'",
    b"\"",
    b"#",
    b"---\n",
    b"...\n",
    b"\t",
    b"0",
    b"1",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551616",
    b"-1",
    b"1.5",
    b".nan",
    b".inf",
    b"null",
    b"~",
    b"true",
    b"<<",
    b"key",
    b"\xff",
    b"\0",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            2 if at < data.len() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at..end);
            }
            3 => data.truncate(at),
            4 => {
                // Duplicate a line.
                let text = data.clone();
                let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
                if !lines.is_empty() {
                    let line = lines[rng.below(lines.len())].to_vec();
                    let at = rng.below(data.len() + 1);
                    data.splice(at..at, line);
                }
            }
            5 => {
                // Swap two lines.
                let text = data.clone();
                let mut lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
                if lines.len() > 1 {
                    let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(i, j);
                    data = lines.concat();
                }
            }
            _ => data.insert(at.min(data.len()), rng.next() as u8),
        }
    }
    data
}

fn yaml_shaped(rng: &mut Rng) -> Vec<u8> {
    let mut data = Vec::new();
    for _ in 0..rng.below(24) {
        data.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
    }
    data
}

#[test]
fn random_bytes_never_break_the_decode_properties() {
    random_cases(decode_case, 5_000 * soak_factor() as usize, 0x7a31_0001);
}

#[test]
fn yaml_shaped_inputs_never_break_the_decode_properties() {
    let mut rng = Rng(0x7a31_0002);
    for i in 0..5_000 * soak_factor() as usize {
        run(&yaml_shaped(&mut rng), &format!("yaml-shaped case {i}"));
    }
}

#[test]
fn mutated_valid_files_never_break_the_decode_properties() {
    let seeds = valid_files();
    for seed in &seeds {
        // The seeds themselves decode, and a written seal is the one
        // `sealed` computes.
        run(seed, "a seed");
        if !seed.starts_with(b"revision: 0") {
            assert_eq!(&sealed(seed), seed, "{}", String::from_utf8_lossy(seed));
        }
    }
    let mut rng = Rng(0x7a31_0003);
    for i in 0..8_000 * soak_factor() as usize {
        let seed = &seeds[rng.below(seeds.len())];
        run(&mutate(&mut rng, seed), &format!("mutation {i}"));
    }
}

#[test]
fn hand_edits_and_deep_bodies_pass_the_decode_properties() {
    // Written files and hand edits go through it without complaint, and it
    // accepts no body it could not write again.
    let mut body = Body::new();
    body.insert("a".to_owned(), json!([1, {"b": null}]));
    let text = format!(
        "revision: 3\nbody: {}\ndigest: x\n",
        serde_json::to_string(&body).unwrap()
    );
    run(text.as_bytes(), "a hand edit in flow style");
    // A body deeper than the backend writes decodes but is not re-encoded.
    let deep = format!(
        "revision: 0\nbody:\n  a: {}1{}\n",
        "[".repeat(110),
        "]".repeat(110)
    );
    run(deep.as_bytes(), "a deep hand-made file");
}
