//! Key and name validation against an independent model of the rule.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revstore::testkit::fuzzing::names_case(data));
