//! Any bytes given to the ONNX importer: an error or a valid network, never a panic.
//! Seed corpus: tests/fixtures/onnx/*.onnx. Built by cargo-fuzz as the `onnx_import` bin of
//! fuzz/Cargo.toml (see scripts/fuzz.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nas::onnx::{import_bytes, ImportOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(im) = import_bytes(data, &ImportOptions::default()) {
        assert!(im.spec.validate().is_ok());
        assert!(im.weights.check(&im.spec).is_ok());
    }
});
