//! NetSpec JSON: what the parser accepts, the plan and the cost model handle.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = nas::net::NetSpec::from_json(text) {
        let t = nas::target::resolve("stm32f401re").expect("built-in profile");
        let plan = nas::net::plan::lower(&spec).expect("a valid spec lowers");
        let _ = nas::net::cost::cost(&plan, &t, &t.limits());
    }
});
