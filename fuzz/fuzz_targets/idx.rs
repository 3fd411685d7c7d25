//! IDX files, raw or gzip: a result or an error, and an accepted file is consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    for labels in [false, true] {
        if let Ok((dims, payload)) = nas::data::parse_idx(data, Path::new("fuzz.idx"), labels) {
            assert_eq!(payload.len(), dims.iter().product::<usize>());
        }
    }
});
