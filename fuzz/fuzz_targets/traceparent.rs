//! Fuzz target: see `obs_examples::fuzz_checks::traceparent` for the property checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| obs_examples::fuzz_checks::traceparent(data));
