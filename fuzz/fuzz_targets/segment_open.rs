#![no_main]
//! Checks: `factlog_tests::fuzz_checks::segment_open`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| factlog_tests::fuzz_checks::segment_open(data));
