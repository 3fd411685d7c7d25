#!/usr/bin/env bash
# Fuzz the parsers of user input with cargo-fuzz (libFuzzer): IDX files, NetSpec JSON, MCU
# profiles, safetensors weights, ELF images, ONNX and TFLite models.
#   ./scripts/fuzz.sh            every target for 10 minutes
#   ./scripts/fuzz.sh 60 idx     one target for a minute
# Installs what it needs when missing: the nightly toolchain (cargo-fuzz needs it; the
# project itself builds on stable) and cargo-fuzz. The corpora start from real files: the
# shared datasets' IDX files, the example specs, the shipped profiles, weights and firmware
# written here. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx netspec target_toml weights elf onnx_import tflite_import)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

data=${NAS_SHARED_DATA:-../shared/data}
corpus=fuzz/corpus
mkdir -p "$corpus"/{idx,netspec,target_toml,weights,elf,onnx_import,tflite_import}
for d in "$data"/*/; do
    for f in "$d"/t10k-labels-idx1-ubyte* ; do [ -e "$f" ] && cp -n "$f" "$corpus/idx/$(basename "$d")-$(basename "$f")"; done
    # A few samples of the images, raw (the whole file is megabytes).
    f=$(ls "$d"/t10k-images-idx3-ubyte* 2>/dev/null | head -1)
    [ -n "$f" ] && { if [[ $f == *.gz ]]; then zcat "$f"; else cat "$f"; fi; } | head -c 4000 >"$corpus/idx/$(basename "$d")-head" || true
done
cp -n examples/specs/*.json "$corpus/netspec/"
cp -n targets/*.toml "$corpus/target_toml/"
cp -n tests/fixtures/onnx/*.onnx "$corpus/onnx_import/"
cp -n tests/fixtures/tflite/*.tflite "$corpus/tflite_import/"
cargo build --release --quiet
./target/release/nas search --generations 0 --epochs 1 --steps-per-epoch 1 --final-top 0 \
    --out "$corpus/.run" --quiet >/dev/null 2>&1 || true
cp -n "$corpus/.run/best/weights.safetensors" "$corpus/weights/smart-start.safetensors" 2>/dev/null || true
./target/release/nas verify --run "$corpus/.run" --lang c --no-emulate --keep "$corpus/.fw" >/dev/null 2>&1 || true
cp -n "$corpus/.fw/chip.elf" "$corpus/elf/smart-start.elf" 2>/dev/null || true

for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${secs}s"
    (cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096)
done
