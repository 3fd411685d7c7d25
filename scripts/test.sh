#!/usr/bin/env bash
# The project's test command: installs what the tests need when it is missing, then runs them.
#   - apt: gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm (cross-compiler, C
#     library and the Cortex-M emulator used by `nas verify` and its tests)
#   - apt: chromium (headless rendering check of `nas report`), python3-dpkt (its example
#     captures feed a `data from-pcap` test); both tests say SKIPPED when these are missing
#   - pip, into a venv under target/: onnxruntime and numpy (the exported ONNX models run in
#     onnxruntime); that test says SKIPPED when they cannot be installed
#   - rustup: the thumbv7em-none-eabihf (Cortex-M4F/M7) and thumbv6m-none-eabi (Cortex-M0+)
#     targets, to cross-build the generated no_std Rust kernel into firmware
#   - a single-node Slurm cluster on localhost (slurm-wlm, munge; scripts/slurm-local.sh) for
#     the tests of `nas search --executor slurm`, started here and stopped when the tests end
# Tests read the real datasets from ../shared/data (override with NAS_SHARED_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v arm-none-eabi-gcc >/dev/null || need_apt+=(gcc-arm-none-eabi)
[ -e /usr/lib/arm-none-eabi/newlib ] || [ -e /usr/lib/arm-none-eabi/lib ] || need_apt+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null || need_apt+=(qemu-system-arm)
# Headless Chromium renders `nas report`'s page in a test (about 20 s to install here);
# python3-dpkt ships small real captures that the `data from-pcap` tests read.
# Optional: a failed install only makes those two tests skip.
want_apt=()
command -v chromium >/dev/null || want_apt+=(chromium)
[ -e /usr/share/doc/python3-dpkt/examples/data/http.pcap ] || want_apt+=(python3-dpkt)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
if [ ${#want_apt[@]} -gt 0 ]; then
    echo "installing (optional): ${want_apt[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    { $SUDO apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want_apt[@]}"; } ||
        echo "warning: could not install ${want_apt[*]}; the tests that need them will say SKIPPED"
fi

# onnxruntime and numpy from PyPI, in a venv under the target directory: a test runs the
# exported ONNX models in onnxruntime. Optional: where they cannot be installed (no network, no
# python3-venv) that test says SKIPPED.
ort_venv="${CARGO_TARGET_DIR:-target}/onnxruntime-venv"
ort_ok() { "$ort_venv/bin/python" -c 'import onnxruntime, numpy' 2>/dev/null; }
if ! ort_ok; then
    echo "installing (optional): onnxruntime and numpy from PyPI into $ort_venv"
    { mkdir -p "$(dirname "$ort_venv")" && python3 -m venv "$ort_venv" &&
        "$ort_venv/bin/pip" install -q onnxruntime numpy; } ||
        echo "warning: could not install onnxruntime; the onnxruntime test will say SKIPPED"
fi
if ort_ok; then
    NAS_ONNXRUNTIME_PYTHON="$(cd "$ort_venv/bin" && pwd)/python"
    export NAS_ONNXRUNTIME_PYTHON
fi

if command -v rustup >/dev/null; then
    for t in thumbv7em-none-eabihf thumbv6m-none-eabi; do
        rustup target list --installed 2>/dev/null | grep -qx "$t" ||
            rustup target add "$t" || echo "warning: could not install the $t Rust target"
    done
fi

if [ "$(id -u)" -eq 0 ]; then
    trap './scripts/slurm-local.sh stop' EXIT
    ./scripts/slurm-local.sh start
else
    echo "warning: not root: the local Slurm cluster is not started; the Slurm executor tests will say so"
fi

# The stages depend one way (tests/stages.rs checks the order ARCHITECTURE.md gives); the
# shared cycle finder, where the checkout has it beside, must agree.
if [ -f ../shared/tools/stage_cycles.py ] && command -v python3 >/dev/null; then
    python3 ../shared/tools/stage_cycles.py src
fi

# Release profile: training through burn is far too slow unoptimised; the main job uses the
# same profile, so dependencies are built once.
# The QEMU plugin behind `nas verify`'s cycle estimate (a cdylib of the workspace, which
# `cargo test` alone does not produce).
cargo build --release -p nas-qemu-mix
cargo test --release "$@"
