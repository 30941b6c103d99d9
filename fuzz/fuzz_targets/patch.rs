//! Patch engine: merge and JSON Patches against an RFC 7396 model and the limits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revstore::testkit::fuzzing::patch_case(data));
