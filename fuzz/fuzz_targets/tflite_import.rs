//! Any bytes given to the TFLite importer: an error or a valid network (and, for an int8
//! model, an int8 network the host reference runs), never a panic. Seed corpus:
//! tests/fixtures/tflite/*.tflite. Built by cargo-fuzz as the `tflite_import` bin of
//! fuzz/Cargo.toml (see scripts/fuzz.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nas::tflite::{import_bytes, ImportOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(im) = import_bytes(data, &ImportOptions::default()) {
        assert!(im.spec.validate().is_ok());
        assert!(im.weights.check(&im.spec).is_ok());
        if let Some(q) = &im.int8 {
            let n = im.spec.input_len * im.spec.input_channels;
            let out = nas::quant::reference_int8(q, &vec![0x17; n]);
            assert_eq!(out.q.len(), im.spec.classes);
        }
    }
});
