//! Operation sequences on the memory, YAML and SQLite backends side by
//! side: results, error kinds and stored state must agree after every step.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revstore_tests::fuzzing::ops_case(data));
