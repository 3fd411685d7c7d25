//! safetensors weights: parsed or refused; weights that pass the spec check lower.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(w) = nas::weights::Weights::from_bytes(data, "fuzz.safetensors") {
        let spec = nas::net::NetSpec::smart_start(784, 12);
        if w.check(&spec).is_ok() {
            let _ = nas::lower::lower_weights(&spec, &w);
        }
    }
});
