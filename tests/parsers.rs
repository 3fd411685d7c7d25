//! Short property-based versions of the fuzz targets in `fuzz/` (run long with
//! `scripts/fuzz.sh`): every parser of user input, fed real files with random byte edits and
//! cuts, returns a value or an error, never panics, and what it accepts is usable.

mod common;
use common::iscx;
use nas::net::{cost, plan, NetSpec};
use proptest::prelude::*;
use std::path::Path;

/// Random edits of a seed file: byte overwrites, then a cut.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = seed.len().max(1);
    (
        proptest::collection::vec((0..n, any::<u8>()), 0..8),
        proptest::option::of(0..n + 1),
    )
        .prop_map(move |(edits, cut)| {
            let mut v = seed.clone();
            for (i, b) in edits {
                if let Some(x) = v.get_mut(i) {
                    *x = b;
                }
            }
            if let Some(c) = cut {
                v.truncate(c);
            }
            v
        })
}

/// The first samples of the real ISCX test images as a small raw IDX file.
fn idx_seed() -> Vec<u8> {
    let (count, len, data) =
        nas::data::read_idx_images(&iscx().join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert!(count > 3);
    let n = 3u32;
    let mut v = vec![0, 0, 8, 3];
    for d in [n, 28, (len / 28) as u32] {
        v.extend(d.to_be_bytes());
    }
    v.extend(&data[..n as usize * len]);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn check_idx(bytes: &[u8], labels: bool) {
    if let Ok((dims, data)) = nas::data::parse_idx(bytes, Path::new("fuzz.idx"), labels) {
        assert_eq!(data.len(), dims.iter().product::<usize>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn idx_images_never_panic(bytes in mutated(idx_seed())) {
        check_idx(&bytes, false);
        check_idx(&bytes, true);
    }

    #[test]
    fn gzipped_idx_never_panics(bytes in mutated(gz(&idx_seed()))) {
        check_idx(&bytes, false);
    }

    #[test]
    fn netspec_json_never_panics(bytes in mutated(std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/specs/iscx-f401re-winner.json")).unwrap()))
    {
        let Ok(text) = std::str::from_utf8(&bytes) else { return Ok(()) };
        if let Ok(spec) = NetSpec::from_json(text) {
            // What the parser accepts, the rest of the chain handles, quickly.
            let start = std::time::Instant::now();
            let t = nas::target::resolve("stm32f401re").unwrap();
            let p = plan::lower(&spec).unwrap();
            let _ = cost::cost(&p, &t, &t.limits());
            prop_assert!(start.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    #[test]
    fn target_toml_never_panics(bytes in mutated(std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("targets/stm32f401re.toml")).unwrap()))
    {
        let Ok(text) = std::str::from_utf8(&bytes) else { return Ok(()) };
        if let Ok(t) = nas::target::Target::from_toml(text, "fuzz.toml") {
            let l = t.limits();
            let spec = NetSpec::smart_start(784, 12);
            let _ = cost::cost(&plan::lower(&spec).unwrap(), &t, &l);
        }
    }

    #[test]
    fn weights_never_panic(bytes in mutated({
        let spec = NetSpec::smart_start(784, 12);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        nas::weights::Weights::random(&spec, 1).save(&p).unwrap();
        std::fs::read(p).unwrap()
    })) {
        if let Ok(w) = nas::weights::Weights::from_bytes(&bytes, "fuzz.safetensors") {
            let spec = NetSpec::smart_start(784, 12);
            if w.check(&spec).is_ok() {
                let _ = nas::lower::lower_weights(&spec, &w);
            }
        }
    }

    #[test]
    fn tflite_never_panics(bytes in mutated(std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tflite/conv_plain_int8.tflite"),
    ).unwrap())) {
        if let Ok(im) = nas::tflite::import_bytes(&bytes, &Default::default()) {
            prop_assert!(im.spec.validate().is_ok());
            prop_assert!(im.weights.check(&im.spec).is_ok());
            if let Some(q) = &im.int8 {
                let x = vec![0x17; im.spec.input_len * im.spec.input_channels];
                prop_assert_eq!(nas::quant::reference_int8(q, &x).q.len(), im.spec.classes);
            }
        }
    }

    #[test]
    fn elf_never_panics(bytes in mutated(std::fs::read("/bin/true").unwrap())) {
        let r = |origin, length| nas::elf::Region { origin, length };
        let _ = nas::elf::ElfImage::parse(&bytes, r(0, 1 << 31), r(1 << 31, 1 << 30));
    }
}
