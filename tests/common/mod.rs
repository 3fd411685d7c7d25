//! Helpers shared by the integration tests (each test file includes this module; not every
//! file uses every helper).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

/// The real ISCX dataset beside the checkout (`../shared/data`, or `NAS_SHARED_DATA`).
pub fn iscx() -> PathBuf {
    let p = nas::data::shared_data_dir().join("iscx-vpn2016-12class-sessionl7");
    assert!(
        p.is_dir(),
        "the real datasets are needed at {} (../shared/data beside the checkout, or set \
         NAS_SHARED_DATA)",
        p.display()
    );
    p
}

/// `out` of a `nas` run that must have succeeded.
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "nas failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The Arm cross-compiler and QEMU, which the firmware tests need; a clear message otherwise.
pub fn require_arm_tools() {
    for tool in ["arm-none-eabi-gcc", "qemu-system-arm"] {
        let ok = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{tool} is missing: apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
        );
    }
}
