//! The YAML backend's file decoder (envelope, body, seal) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revstore_yaml::fuzzing::decode_case(data));
