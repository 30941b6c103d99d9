//! The CLI's `batch` protocol: the request decoder and a whole session on a
//! memory store, on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| revstore_cli::fuzzing::batch_case(data));
