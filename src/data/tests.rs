//! Tests of the data stage: crafted IDX files (every malformed case) and the real datasets.

/// The shared real-data folder; the real-data tests must fail loudly, not pass, without it.
fn shared_data_dir() -> PathBuf {
    let dir = super::shared_data_dir();
    assert!(
        dir.is_dir(),
        "real datasets not found at {} (set NAS_SHARED_DATA to the shared data folder)",
        dir.display()
    );
    dir
}
use super::*;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;

const ISCX: &str = "iscx-vpn2016-12class-sessionl7";
const USTC: &str = "ustc-tfc2016-20class-sessionl7";
const ISCX_TRAIN_COUNTS: [usize; 12] = [
    3139, 2068, 5400, 897, 1251, 5400, 3611, 262, 877, 402, 486, 5400,
];

// ----- crafted files -----

fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write crafted file");
    p
}

/// Writes a valid pair `<prefix>-images-idx3-ubyte[.gz]` / `<prefix>-labels-idx1-ubyte[.gz]`.
fn write_pair(dir: &Path, prefix: &str, labels: &[u8], rows: u32, cols: u32, compress: bool) {
    let n = labels.len() as u32;
    let len = (rows * cols) as usize;
    let data: Vec<u8> = (0..labels.len() * len).map(|i| (i % 251) as u8).collect();
    let img = idx_bytes(IDX_IMAGES_MAGIC, &[n, rows, cols], &data);
    let lab = idx_bytes(IDX_LABELS_MAGIC, &[n], labels);
    let sfx = if compress { ".gz" } else { "" };
    let (img, lab) = if compress {
        (gz(&img), gz(&lab))
    } else {
        (img, lab)
    };
    write(dir, &format!("{prefix}-images-idx3-ubyte{sfx}"), &img);
    write(dir, &format!("{prefix}-labels-idx1-ubyte{sfx}"), &lab);
}

fn assert_names(err: &DataError, path: &Path) {
    let msg = err.to_string();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(msg.contains(name), "error {msg:?} does not name {name}");
}

#[test]
fn reads_raw_and_gz_images_and_labels() {
    let t = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..2 * 6).map(|i| i as u8).collect();
    let raw = idx_bytes(IDX_IMAGES_MAGIC, &[2, 2, 3], &data);
    for (name, bytes) in [("a-images-idx3-ubyte", raw.clone()), ("a.gz", gz(&raw))] {
        let p = write(t.path(), name, &bytes);
        let (n, len, got) = read_idx_images(&p).unwrap();
        assert_eq!((n, len), (2, 6));
        assert_eq!(got, data);
    }
    // 1 and 3 sample dimensions are accepted too; len is their product.
    let p = write(t.path(), "d2", &idx_bytes(0x0802, &[3, 4], &[7; 12]));
    assert_eq!(read_idx_images(&p).unwrap().1, 4);
    let p = write(t.path(), "d4", &idx_bytes(0x0804, &[1, 2, 3, 4], &[7; 24]));
    assert_eq!(read_idx_images(&p).unwrap().1, 24);
    let p = write(
        t.path(),
        "l.gz",
        &gz(&idx_bytes(IDX_LABELS_MAGIC, &[3], &[0, 1, 2])),
    );
    assert_eq!(read_idx_labels(&p).unwrap(), vec![0, 1, 2]);
    // A multi-member gzip file is one stream.
    let whole = idx_bytes(IDX_LABELS_MAGIC, &[4], &[3, 2, 1, 0]);
    let mut multi = gz(&whole[..6]);
    multi.extend(gz(&whole[6..]));
    let p = write(t.path(), "multi.gz", &multi);
    assert_eq!(read_idx_labels(&p).unwrap(), vec![3, 2, 1, 0]);
}

#[test]
fn bad_magic_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let cases = [
        (
            "labels-as-images",
            idx_bytes(IDX_LABELS_MAGIC, &[2], &[0, 1]),
            true,
        ),
        ("float-type", idx_bytes(0x0d03, &[1, 1, 1], &[0; 4]), true),
        ("five-dims", idx_bytes(0x0805, &[1, 1, 1, 1, 1], &[0]), true),
        ("text", b"hello, world, not idx".to_vec(), true),
        (
            "images-as-labels",
            idx_bytes(IDX_IMAGES_MAGIC, &[1, 1, 1], &[0]),
            false,
        ),
    ];
    for (name, bytes, images) in cases {
        for compress in [false, true] {
            let fname = format!("{name}{}", if compress { ".gz" } else { "" });
            let bytes = if compress { gz(&bytes) } else { bytes.clone() };
            let p = write(t.path(), &fname, &bytes);
            let err = if images {
                read_idx_images(&p).unwrap_err()
            } else {
                read_idx_labels(&p).unwrap_err()
            };
            assert!(matches!(err, DataError::BadMagic { .. }), "{fname}: {err}");
            assert_names(&err, &p);
        }
    }
}

#[test]
fn zero_and_overflowing_dims_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let p = write(
        t.path(),
        "zero-images",
        &idx_bytes(IDX_IMAGES_MAGIC, &[2, 28, 0], &[]),
    );
    let err = read_idx_images(&p).unwrap_err();
    assert!(matches!(err, DataError::BadDims { .. }), "{err}");
    assert_names(&err, &p);
    let max = u32::MAX;
    let p = write(
        t.path(),
        "huge",
        &idx_bytes(0x0804, &[max, max, max, max], &[0; 8]),
    );
    let err = read_idx_images(&p).unwrap_err();
    assert!(matches!(err, DataError::BadDims { .. }), "{err}");
    assert_names(&err, &p);
    let p = write(
        t.path(),
        "empty-labels",
        &idx_bytes(IDX_LABELS_MAGIC, &[0], &[]),
    );
    let err = read_idx_labels(&p).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err}");
    assert_names(&err, &p);
}

#[test]
fn huge_header_in_tiny_file_is_truncated_not_oom() {
    let t = tempfile::tempdir().unwrap();
    // Claims 4G samples of 784 bytes in about 1 KB.
    let bytes = idx_bytes(IDX_IMAGES_MAGIC, &[u32::MAX, 28, 28], &[1; 1000]);
    for (name, b) in [("big-raw", bytes.clone()), ("big.gz", gz(&bytes))] {
        let p = write(t.path(), name, &b);
        let err = read_idx_images(&p).unwrap_err();
        match &err {
            DataError::Truncated {
                expected_bytes,
                actual_bytes,
                ..
            } => {
                assert_eq!(*expected_bytes, 16 + u64::from(u32::MAX) * 784);
                assert_eq!(*actual_bytes, 1016);
            }
            other => panic!("{name}: expected Truncated, got {other}"),
        }
        assert_names(&err, &p);
    }
}

#[test]
fn truncated_files_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let full = idx_bytes(IDX_IMAGES_MAGIC, &[3, 2, 2], &[5; 12]);
    for cut in [2, 9, 15, 20] {
        let part = &full[..cut];
        for (name, b) in [
            (format!("cut{cut}"), part.to_vec()),
            (format!("cut{cut}.gz"), gz(part)),
        ] {
            let p = write(t.path(), &name, &b);
            let err = read_idx_images(&p).unwrap_err();
            assert!(matches!(err, DataError::Truncated { .. }), "{name}: {err}");
            assert_names(&err, &p);
        }
    }
    // A gzip file cut in its compressed stream is a gzip error.
    let z = gz(&full);
    let p = write(t.path(), "cut-stream.gz", &z[..z.len() - 6]);
    let err = read_idx_images(&p).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err}");
    assert_names(&err, &p);
}

#[test]
fn trailing_bytes_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let mut bytes = idx_bytes(IDX_LABELS_MAGIC, &[3], &[0, 1, 2]);
    bytes.push(9);
    for (name, b) in [("trail", bytes.clone()), ("trail.gz", gz(&bytes))] {
        let p = write(t.path(), name, &b);
        let err = read_idx_labels(&p).unwrap_err();
        assert!(
            matches!(err, DataError::TrailingBytes { .. }),
            "{name}: {err}"
        );
        assert_names(&err, &p);
    }
    // Garbage after a valid gzip member is reported too.
    let mut z = gz(&idx_bytes(IDX_LABELS_MAGIC, &[3], &[0, 1, 2]));
    z.extend_from_slice(b"garbage!");
    let p = write(t.path(), "garbage.gz", &z);
    let err = read_idx_labels(&p).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Gzip { .. } | DataError::TrailingBytes { .. }
        ),
        "{err}"
    );
    assert_names(&err, &p);
}

#[test]
fn corrupt_gzip_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..4000).map(|i| (i * 7 % 256) as u8).collect();
    let z = gz(&idx_bytes(IDX_IMAGES_MAGIC, &[10, 20, 20], &data));
    // Damage the deflate stream, then the CRC trailer.
    for (name, at) in [("body.gz", z.len() / 2), ("crc.gz", z.len() - 6)] {
        let mut bad = z.clone();
        bad[at] ^= 0xff;
        let p = write(t.path(), name, &bad);
        let err = read_idx_images(&p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Gzip { .. }
                    | DataError::Truncated { .. }
                    | DataError::TrailingBytes { .. }
            ),
            "{name}: {err}"
        );
        assert_names(&err, &p);
    }
}

#[test]
fn missing_file_is_io_error() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("nope-labels-idx1-ubyte");
    let err = read_idx_labels(&p).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    assert_names(&err, &p);
}

#[test]
fn load_dir_two_pairs_raw_and_gz() {
    for compress in [false, true] {
        let t = tempfile::tempdir().unwrap();
        write_pair(t.path(), "train", &[0, 1, 2, 0, 1], 2, 3, compress);
        write_pair(t.path(), "t10k", &[2, 1], 2, 3, !compress);
        let s = load_dir(t.path(), &LoadOptions::default()).unwrap();
        assert!(!s.test_held_out && !s.synthetic);
        assert_eq!(
            (s.train.n(), s.test.n(), s.train.len, s.train.classes),
            (5, 2, 6, 3)
        );
        assert_eq!(s.test.classes, 3);
        assert!(s.train.name.ends_with("/train") && s.test.name.ends_with("/test"));
    }
    // test-* names and an explicit class count.
    let t = tempfile::tempdir().unwrap();
    write_pair(t.path(), "train", &[0, 1], 1, 4, true);
    write_pair(t.path(), "test", &[1], 1, 4, true);
    let opts = LoadOptions {
        classes: Some(5),
        ..LoadOptions::default()
    };
    let s = load_dir(t.path(), &opts).unwrap();
    assert_eq!((s.train.classes, s.test.n()), (5, 1));
}

#[test]
fn load_dir_single_pair_holds_out_test_and_caps_train() {
    let t = tempfile::tempdir().unwrap();
    let labels: Vec<u8> = (0..60).map(|i| (i % 3) as u8).collect();
    write_pair(t.path(), "t10k", &labels, 2, 2, true);
    let s = load_dir(t.path(), &LoadOptions::default()).unwrap();
    assert!(s.test_held_out);
    assert_eq!((s.train.n(), s.test.n()), (54, 6));
    assert_eq!(s.test.class_counts(), vec![2, 2, 2]);
    let opts = LoadOptions {
        limit_per_class: Some(5),
        ..LoadOptions::default()
    };
    let s = load_dir(t.path(), &opts).unwrap();
    assert_eq!(s.train.class_counts(), vec![5, 5, 5]);
    assert_eq!(s.test.n(), 6);
}

#[test]
fn count_mismatch_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    write_pair(t.path(), "t10k", &[0, 1, 0, 1], 2, 2, false);
    let lab = write(
        t.path(),
        "t10k-labels-idx1-ubyte",
        &idx_bytes(IDX_LABELS_MAGIC, &[3], &[0, 1, 0]),
    );
    let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                images_count: 4,
                labels_count: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_names(&err, &lab);
    assert_names(&err, &t.path().join("t10k-images-idx3-ubyte"));
}

#[test]
fn label_out_of_range_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    write_pair(t.path(), "train", &[0, 1, 0, 1], 1, 3, false);
    write_pair(t.path(), "t10k", &[0, 2], 1, 3, false);
    let opts = LoadOptions {
        classes: Some(2),
        ..LoadOptions::default()
    };
    let err = load_dir(t.path(), &opts).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                index: 1,
                label: 2,
                classes: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_names(&err, &t.path().join("t10k-labels-idx1-ubyte"));
    let bad = LoadOptions {
        classes: Some(0),
        ..LoadOptions::default()
    };
    assert!(matches!(
        load_dir(t.path(), &bad),
        Err(DataError::InvalidParameter { .. })
    ));
}

#[test]
fn test_label_outside_the_training_classes_is_an_error() {
    // A stray 99 among test labels 0..=2 used to make a 100-class dataset without a word.
    let t = tempfile::tempdir().unwrap();
    write_pair(t.path(), "train", &[0, 1, 2, 0, 1, 2], 1, 3, false);
    write_pair(t.path(), "t10k", &[0, 1, 99, 2], 1, 3, false);
    let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::UntrainedTestLabel {
                index: 2,
                label: 99,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("t10k-labels-idx1-ubyte")
            && msg.contains("label 99")
            && msg.contains("train-labels-idx1-ubyte")
            && msg.contains("labels 0..=2"),
        "{msg}"
    );
    // A class inside the range that the training split never shows is refused as well.
    write_pair(t.path(), "train", &[0, 2, 0, 2], 1, 3, false);
    write_pair(t.path(), "t10k", &[0, 1], 1, 3, false);
    let msg = load_dir(t.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("label 1 ") && msg.contains("labels 0, 2"),
        "{msg}"
    );
}

#[test]
fn length_mismatch_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    write_pair(t.path(), "train", &[0, 1], 28, 28, true);
    write_pair(t.path(), "t10k", &[0, 1], 28, 27, true);
    let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LengthMismatch {
                train_len: 784,
                test_len: 756,
                ..
            }
        ),
        "{err}"
    );
    assert_names(&err, &t.path().join("train-images-idx3-ubyte.gz"));
    assert_names(&err, &t.path().join("t10k-images-idx3-ubyte.gz"));
}

#[test]
fn missing_and_ambiguous_files_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
    // Images without their labels.
    write_pair(t.path(), "t10k", &[0, 1], 1, 2, false);
    write(
        t.path(),
        "train-images-idx3-ubyte.gz",
        &gz(&idx_bytes(IDX_IMAGES_MAGIC, &[1, 1, 1], &[0])),
    );
    let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("train-labels-idx1-ubyte"), "{err}");
    // Two unrelated pairs.
    let t = tempfile::tempdir().unwrap();
    write_pair(t.path(), "foo", &[0, 1], 1, 2, false);
    write_pair(t.path(), "bar", &[0, 1], 1, 2, false);
    let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Ambiguous { .. }), "{err}");
    // A directory that does not exist.
    let err = load_dir(&t.path().join("absent"), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent"));
}

#[test]
fn corrupt_gzip_in_dir_names_the_file() {
    let t = tempfile::tempdir().unwrap();
    write_pair(t.path(), "t10k", &[0, 1, 0, 1], 2, 2, true);
    let p = t.path().join("t10k-images-idx3-ubyte.gz");
    let mut z = std::fs::read(&p).unwrap();
    let mid = z.len() / 2;
    z[mid] ^= 0x55;
    z.truncate(z.len() - 3);
    std::fs::write(&p, &z).unwrap();
    let err = load_dir(t.path(), &LoadOptions::default()).unwrap_err();
    assert_names(&err, &p);
}

#[test]
fn file_name_classification() {
    let c = |n: &str| classify_idx_name(n).map(|(p, r)| (p, r == IdxRole::Images));
    assert_eq!(
        c("train-images-idx3-ubyte.gz"),
        Some(("train".into(), true))
    );
    assert_eq!(c("t10k-labels-idx1-ubyte"), Some(("t10k".into(), false)));
    assert_eq!(c("Test-images.idx3-ubyte"), Some(("test".into(), true)));
    assert_eq!(
        c("my-set-images-idx3-ubyte.gz"),
        Some(("my-set".into(), true))
    );
    assert_eq!(c("README.md"), None);
    assert_eq!(c("images-idx3-ubyte"), None);
    assert_eq!(c("train-images-idx3-ubyte.zip"), None);
}

// ----- in-memory datasets -----

#[test]
fn dataset_new_validates() {
    assert!(Dataset::new("ok", vec![1, 2, 3, 4], vec![0, 1], 2, 2).is_ok());
    assert!(Dataset::new("empty", vec![], vec![], 3, 2).is_ok());
    let e = Dataset::new("short", vec![1, 2, 3], vec![0, 1], 2, 2).unwrap_err();
    assert!(matches!(e, DataError::BadShape { .. }) && e.to_string().contains("short"));
    assert!(matches!(
        Dataset::new("len0", vec![], vec![], 0, 2),
        Err(DataError::BadShape { .. })
    ));
    assert!(matches!(
        Dataset::new("c0", vec![1], vec![0], 1, 0),
        Err(DataError::BadShape { .. })
    ));
    assert!(matches!(
        Dataset::new("c257", vec![1], vec![0], 1, 257),
        Err(DataError::BadShape { .. })
    ));
    let e = Dataset::new("lbl", vec![1, 2], vec![0, 5], 1, 3).unwrap_err();
    assert!(matches!(
        e,
        DataError::LabelOutOfRange {
            index: 1,
            label: 5,
            classes: 3,
            ..
        }
    ));
    assert!(e.to_string().contains("lbl"));
}

#[test]
fn dataset_accessors_subset_and_head() {
    let ds = Dataset::new("d", (0..12).collect(), vec![1, 0, 1, 2, 1, 0], 2, 4).unwrap();
    assert_eq!(ds.n(), 6);
    assert_eq!(ds.sample(2), &[4, 5]);
    assert_eq!(ds.get(5), Some((&[10u8, 11][..], 0)));
    assert_eq!(ds.get(6), None);
    assert_eq!(ds.class_counts(), vec![2, 3, 1, 0]);
    let sub = ds.subset(&[3, 0]);
    assert_eq!(
        (sub.samples.clone(), sub.labels.clone(), sub.classes),
        (vec![6, 7, 0, 1], vec![2, 1], 4)
    );
    let head = ds.stratified_head(1);
    assert_eq!(head.labels, vec![1, 0, 2]);
    assert_eq!(head.samples, vec![0, 1, 2, 3, 6, 7]);
    assert_eq!(ds.stratified_head(10), ds);
    assert_eq!(ds.stratified_head(0).n(), 0);
}

fn toy_labels(n: usize, classes: usize) -> Vec<u8> {
    // Imbalanced: class c has roughly proportional to (c + 1) samples.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|_| {
            let total = classes * (classes + 1) / 2;
            let mut r = rng.random_range(0..total);
            let mut c = 0;
            while r > c {
                r -= c + 1;
                c += 1;
            }
            c.min(classes - 1) as u8
        })
        .collect()
}

fn check_split(labels: &[u8], classes: usize, fraction: f64, keep: &[usize], held: &[usize]) {
    assert!(keep.windows(2).all(|w| w[0] < w[1]) && held.windows(2).all(|w| w[0] < w[1]));
    let mut all: Vec<usize> = keep.iter().chain(held).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..labels.len()).collect::<Vec<_>>(),
        "disjoint and covering"
    );
    let total = count_classes(labels, classes);
    let held_counts = count_classes(
        &held.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
        classes,
    );
    for c in 0..classes {
        let target = (fraction * total[c] as f64).round() as i64;
        assert!(
            (held_counts[c] as i64 - target).abs() <= 1,
            "class {c}: held {} of {}, target {target}",
            held_counts[c],
            total[c]
        );
        if total[c] >= 2 {
            assert!(held_counts[c] >= 1 && held_counts[c] < total[c]);
        }
    }
}

#[test]
fn split_is_stratified_deterministic_and_validated() {
    let labels = toy_labels(1000, 5);
    let (k1, h1) = stratified_split(&labels, 5, 0.1, 1).unwrap();
    check_split(&labels, 5, 0.1, &k1, &h1);
    let (k2, h2) = stratified_split(&labels, 5, 0.1, 1).unwrap();
    assert_eq!((k1.clone(), h1.clone()), (k2, h2));
    let (_, h3) = stratified_split(&labels, 5, 0.1, 2).unwrap();
    assert_ne!(h1, h3);
    let (k, h) = stratified_split(&labels, 5, 0.33, 3).unwrap();
    check_split(&labels, 5, 0.33, &k, &h);
    // Tiny classes still get one held-out sample.
    let (_, h) = stratified_split(&[0, 0, 1, 1, 1], 2, 0.1, 0).unwrap();
    assert_eq!(h.len(), 2);
    for f in [0.0, 1.0, -0.5, f64::NAN] {
        assert!(matches!(
            stratified_split(&labels, 5, f, 0),
            Err(DataError::InvalidParameter { .. })
        ));
    }
    assert!(matches!(
        stratified_split(&[0, 0, 1], 2, 0.5, 0),
        Err(DataError::TooFewForSplit {
            class: 1,
            count: 1,
            needed: 2
        })
    ));
    assert!(matches!(
        stratified_split(&[], 2, 0.5, 0),
        Err(DataError::Empty { .. })
    ));
    assert!(matches!(
        stratified_split(&[3], 2, 0.5, 0),
        Err(DataError::LabelOutOfRange { .. })
    ));
}

#[test]
fn kfold_is_stratified_deterministic_and_validated() {
    let labels = toy_labels(997, 6);
    let folds = stratified_kfold(&labels, 6, 5, 11).unwrap();
    assert_eq!(folds.len(), 5);
    let mut all: Vec<usize> = folds.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..labels.len()).collect::<Vec<_>>(),
        "disjoint and covering"
    );
    let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
    assert!(
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
        "{sizes:?}"
    );
    let total = count_classes(&labels, 6);
    for f in &folds {
        assert!(f.windows(2).all(|w| w[0] < w[1]));
        let counts = count_classes(&f.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 6);
        for c in 0..6 {
            assert!(
                counts[c] == total[c] / 5 || counts[c] == total[c].div_ceil(5),
                "class {c}"
            );
        }
    }
    assert_eq!(folds, stratified_kfold(&labels, 6, 5, 11).unwrap());
    assert_ne!(folds, stratified_kfold(&labels, 6, 5, 12).unwrap());
    assert!(matches!(
        stratified_kfold(&labels, 6, 1, 0),
        Err(DataError::InvalidParameter { .. })
    ));
    assert!(matches!(
        stratified_kfold(&[0, 0, 0, 1, 1], 2, 3, 0),
        Err(DataError::TooFewForSplit {
            class: 1,
            count: 2,
            needed: 3
        })
    ));
}

// ----- synthetic data -----

#[test]
fn synthetic_is_deterministic_and_shaped() {
    let a = synthetic(240, 784, 12, 5);
    assert_eq!(a, synthetic(240, 784, 12, 5));
    assert_ne!(a.samples, synthetic(240, 784, 12, 6).samples);
    assert_eq!(
        (a.name.as_str(), a.n(), a.len, a.classes),
        ("synthetic", 240, 784, 12)
    );
    assert_eq!(a.class_counts(), vec![20; 12]);
    // Short sessions: many samples end in zero padding, none is all zero.
    let padded = (0..a.n()).filter(|&i| a.sample(i)[783] == 0).count();
    assert!(padded > a.n() / 4, "{padded}");
    assert!((0..a.n()).all(|i| a.sample(i)[..8].iter().any(|&b| b != 0)));
    // Degenerate arguments do not panic.
    assert_eq!(synthetic(3, 0, 0, 1).len, 1);
    assert_eq!(synthetic(0, 16, 300, 1).classes, 256);
    let s = synthetic_splits(DEFAULT_SEED);
    assert!(s.synthetic);
    assert_eq!(
        (s.train.n(), s.test.n(), s.train.len, s.test.classes),
        (2400, 480, 784, 12)
    );
    assert_eq!(s.test.class_counts(), vec![40; 12]);
    assert_eq!(s, synthetic_splits(DEFAULT_SEED));
}

/// The classes are learnable (a naive-Bayes rule on payload byte histograms beats chance
/// by far) but not trivially (it stays clearly below 100 %: siblings share headers and a
/// few instances borrow another class's payload).
#[test]
fn synthetic_is_learnable_but_not_trivial() {
    let s = synthetic_splits(3);
    let classes = s.train.classes;
    let used = |x: &[u8]| x.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let mut log_p = vec![vec![1f64; 256]; classes];
    for i in 0..s.train.n() {
        let x = s.train.sample(i);
        for &b in &x[..used(x)] {
            log_p[usize::from(s.train.labels[i])][usize::from(b)] += 1.0;
        }
    }
    for row in &mut log_p {
        let total: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v = (*v / total).ln());
    }
    let correct = (0..s.test.n())
        .filter(|&i| {
            let x = s.test.sample(i);
            let score =
                |c: usize| -> f64 { x[..used(x)].iter().map(|&b| log_p[c][usize::from(b)]).sum() };
            let best = (0..classes).max_by(|&a, &b| score(a).total_cmp(&score(b)));
            best == Some(usize::from(s.test.labels[i]))
        })
        .count();
    let acc = correct as f64 / s.test.n() as f64;
    eprintln!("byte-histogram naive Bayes accuracy on synthetic: {acc:.3}");
    assert!(acc > 0.5, "{acc}");
    assert!(acc < 0.99, "{acc}");
}

#[test]
fn summary_counts_and_displays() {
    let ds = Dataset::new("toy", vec![0; 6], vec![0, 0, 0, 2, 2, 0], 1, 3).unwrap();
    let s = summarize(&ds);
    assert_eq!(s.class_counts, vec![4, 0, 2]);
    assert_eq!(s.imbalance_ratio, 2.0);
    let text = s.to_string();
    assert!(
        text.contains("toy") && text.contains("66.67%") && text.contains("33.33%"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2 + 3);
    let empty = summarize(&ds.subset(&[]));
    assert_eq!(empty.imbalance_ratio, 0.0);
    assert!(empty.to_string().contains("0.00%"));
}

// ----- real data -----

#[test]
fn real_iscx_loads_with_published_counts() {
    let dir = shared_data_dir().join(ISCX);
    let t0 = std::time::Instant::now();
    let s = load_dir(&dir, &LoadOptions::default()).unwrap();
    eprintln!("ISCX loaded in {:?}", t0.elapsed());
    assert!(!s.test_held_out && !s.synthetic);
    assert_eq!((s.train.n(), s.test.n()), (29_193, 3_244));
    assert_eq!(
        (s.train.len, s.train.classes, s.test.classes),
        (784, 12, 12)
    );
    assert_eq!(s.train.class_counts(), ISCX_TRAIN_COUNTS.to_vec());
    assert!(s.test.class_counts().iter().all(|&c| c > 0));
    let sum = summarize(&s.train);
    assert!((sum.imbalance_ratio - 5400.0 / 262.0).abs() < 1e-9);
    eprintln!("{sum}");
    // Direct readers agree.
    let (n, len, data) = read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((n, len, data.len()), (3_244, 784, 3_244 * 784));
    // Small real subsets.
    let head = s.train.stratified_head(10);
    assert_eq!(head.class_counts(), vec![10; 12]);
    let capped = load_dir(
        &dir,
        &LoadOptions {
            limit_per_class: Some(300),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let expect: Vec<usize> = ISCX_TRAIN_COUNTS.iter().map(|&c| c.min(300)).collect();
    assert_eq!(capped.train.class_counts(), expect);
    assert_eq!(capped.test.n(), 3_244);
}

#[test]
fn real_ustc_single_pair_holds_out_stratified_test() {
    let dir = shared_data_dir().join(USTC);
    let s = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert!(s.test_held_out);
    assert_eq!(s.train.n() + s.test.n(), 13_325);
    assert_eq!(
        (s.train.len, s.train.classes, s.test.classes),
        (784, 20, 20)
    );
    let (tr, te) = (s.train.class_counts(), s.test.class_counts());
    for c in 0..20 {
        let total = tr[c] + te[c];
        assert!((457..=958).contains(&total), "class {c}: {total}");
        let target = (DEFAULT_TEST_FRACTION * total as f64).round() as i64;
        assert!(
            (te[c] as i64 - target).abs() <= 1,
            "class {c}: {} vs {target}",
            te[c]
        );
    }
    let share = s.test.n() as f64 / 13_325.0;
    assert!((share - 0.10).abs() < 0.005, "{share}");
    // Same seed, same split; another seed, another split.
    let again = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(again.test.labels, s.test.labels);
    assert_eq!(again.test.samples, s.test.samples);
    let other = load_dir(
        &dir,
        &LoadOptions {
            seed: 7,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(other.test.n(), s.test.n());
    assert_ne!(other.test.samples, s.test.samples);
    // k-fold on the real labels.
    let all_labels = read_idx_labels(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let folds = stratified_kfold(&all_labels, 20, 5, DEFAULT_SEED).unwrap();
    let mut all: Vec<usize> = folds.concat();
    all.sort_unstable();
    assert_eq!(all, (0..13_325).collect::<Vec<_>>());
}
