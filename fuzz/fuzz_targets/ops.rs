#![no_main]
//! Checks: `factlog_tests::fuzz_checks::ops`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| factlog_tests::fuzz_checks::ops(data));
