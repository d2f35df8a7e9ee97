#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mark_gateway::fuzzing::v2_json(data));
