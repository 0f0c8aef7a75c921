#![no_main]
//! Checks: `factlog_tests::fuzz_checks::snapshot_decode`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| factlog_tests::fuzz_checks::snapshot_decode(data));
