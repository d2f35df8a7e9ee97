#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mark_gateway::fuzzing::workload(data));
