//! MCU profiles (TOML): what the parser accepts has usable budgets.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = nas::target::Target::from_toml(text, "fuzz.toml") {
        let spec = nas::net::NetSpec::smart_start(784, 12);
        let plan = nas::net::plan::lower(&spec).expect("the smart start lowers");
        let _ = nas::net::cost::cost(&plan, &t, &t.limits());
    }
});
