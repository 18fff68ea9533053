#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sasldb_fuzz::harness::serve_dovecot(data));
