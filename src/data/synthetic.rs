//! The synthetic demo dataset: deterministic byte sequences shaped like sessions, learnable
//! but not trivially.

use super::*;

/// First bytes of a few protocol families (TLS application data, TLS handshake, HTTP,
/// length-prefixed binary). Several classes share each family, so the first bytes alone do
/// not identify the class.
pub(crate) const FAMILY_PREFIXES: [&[u8]; 4] = [
    &[0x17, 0x03, 0x03],
    &[0x16, 0x03, 0x01],
    b"GET /",
    &[0x00, 0x00, 0x00],
];
/// Number of byte alphabets that the classes' payload distributions are built from.
pub(crate) const ALPHABET_POOL: usize = 12;
/// Probability that a header byte of an instance is replaced by a random byte.
pub(crate) const HEADER_NOISE: f64 = 0.2;
/// Probability that an instance's payload follows another class's payload prototype.
pub(crate) const PAYLOAD_CONFUSION: f64 = 0.08;

/// The byte-pattern prototype of one synthetic class.
///
/// Classes come in sibling pairs (`2k`, `2k + 1`, like an application with and without a
/// VPN) that share their header; each payload favours a band of byte values (like text, or a
/// field's typical range) with a few strays, at a rate that varies per instance. So neither the
/// header nor the byte histogram alone identifies a class.
pub(crate) struct ClassPrototype {
    /// Protocol-family prefix followed by application-specific header bytes.
    header: Vec<u8>,
    /// Bytes that the payload favours.
    alphabet: [u8; 16],
    /// Probability that a payload byte comes from `alphabet` (otherwise uniform).
    alphabet_p: f64,
    /// Record marker repeated through the payload about every `period` bytes.
    marker: [u8; 3],
    period: usize,
    /// Mean session length as a share of the sample length.
    mean_len: f64,
}

impl ClassPrototype {
    /// Draws the prototypes of `classes` classes.
    fn draw_all(classes: usize, rng: &mut ChaCha8Rng) -> Vec<Self> {
        let pool: Vec<[u8; 16]> = (0..ALPHABET_POOL)
            .map(|_| {
                // A band of byte values (like text, or a field's typical range) with a few
                // strays, so that classes differ in how their payload bytes are distributed.
                let base: u8 = rng.random_range(0..=240);
                let mut a = [0u8; 16];
                for (i, b) in a.iter_mut().enumerate() {
                    *b = base + i as u8;
                }
                a
            })
            .collect();
        let headers: Vec<Vec<u8>> = (0..classes.div_ceil(2))
            .map(|app| {
                let mut h = FAMILY_PREFIXES[app % FAMILY_PREFIXES.len()].to_vec();
                let extra = rng.random_range(6..=20);
                h.extend((0..extra).map(|_| rng.random::<u8>()));
                h
            })
            .collect();
        (0..classes)
            .map(|class| {
                let header = headers[class / 2].clone();
                let mut alphabet = pool[class % ALPHABET_POOL];
                for _ in 0..4 {
                    let j = rng.random_range(0..alphabet.len());
                    alphabet[j] = rng.random();
                }
                Self {
                    marker: [header[0], rng.random(), rng.random()],
                    header,
                    alphabet,
                    alphabet_p: rng.random_range(0.3..0.6),
                    period: rng.random_range(24..=96),
                    mean_len: rng.random_range(0.3..0.95),
                }
            })
            .collect()
    }

    /// Writes this class's header into `out[..session]`, with a variable-length field (0..=2
    /// random bytes) after the first three bytes and [`HEADER_NOISE`] of its bytes mutated.
    /// Returns the position after the header.
    fn render_header(&self, out: &mut [u8], session: usize, rng: &mut ChaCha8Rng) -> usize {
        let shift = rng.random_range(0..=2usize);
        let mut pos = 0usize;
        for (j, &b) in self.header.iter().enumerate() {
            if j == 3 {
                for _ in 0..shift {
                    if pos < session {
                        out[pos] = rng.random();
                        pos += 1;
                    }
                }
            }
            if pos >= session {
                break;
            }
            out[pos] = if rng.random_bool(HEADER_NOISE) {
                rng.random()
            } else {
                b
            };
            pos += 1;
        }
        pos
    }

    /// Fills `out[pos..session]` with payload: record markers about every `period` bytes and
    /// bytes from the class alphabet (at a per-instance rate) or uniform.
    fn render_payload(&self, out: &mut [u8], mut pos: usize, session: usize, rng: &mut ChaCha8Rng) {
        let p = (self.alphabet_p * rng.random_range(0.5..1.5)).clamp(0.0, 1.0);
        let mut next_marker = pos + rng.random_range(8..self.period.max(9));
        while pos < session {
            if pos == next_marker {
                for &m in &self.marker {
                    if pos < session {
                        out[pos] = m;
                        pos += 1;
                    }
                }
                next_marker = pos + self.period + rng.random_range(0..16);
                continue;
            }
            out[pos] = if rng.random_bool(p) {
                self.alphabet[rng.random_range(0..self.alphabet.len())]
            } else {
                rng.random()
            };
            pos += 1;
        }
    }
}

/// Writes one noisy instance of class `class` into `out` (zero-filled on entry); bytes from
/// the session length on stay zero, like the padding of a short session.
pub(crate) fn render_instance(
    protos: &[ClassPrototype],
    class: usize,
    out: &mut [u8],
    rng: &mut ChaCha8Rng,
) {
    let proto = &protos[class];
    let len = out.len();
    let session = (proto.mean_len * len as f64 * rng.random_range(0.5..1.5)).round() as usize;
    let session = session.clamp(len.min(proto.header.len() + 1), len);
    let pos = proto.render_header(out, session, rng);
    let payload = if rng.random_bool(PAYLOAD_CONFUSION) {
        &protos[rng.random_range(0..protos.len())]
    } else {
        proto
    };
    payload.render_payload(out, pos, session, rng);
}

/// A deterministic dataset shaped like session bytes, named `"synthetic"`.
///
/// Each class has a prototype: a protocol-family prefix and application header shared with
/// a sibling class, then payload drawn from a class-specific byte distribution (a band of
/// byte values mixed with uniform bytes) with periodic record markers, and zero padding after a
/// class-dependent, randomly varying session length. Instances mutate header bytes, shift
/// fields, vary lengths and alphabet rates, and a few borrow another class's payload, so a
/// small CNN can learn the classes, but neither the header nor the byte histogram alone
/// separates them and accuracy stays below 100 %. Sample `i` has class
/// `i % classes` (balanced). `len` is raised to at least 1 and `classes` clamped to
/// `1..=256`.
pub fn synthetic(n: usize, len: usize, classes: usize, seed: u64) -> Dataset {
    let len = len.max(1);
    let classes = classes.clamp(1, MAX_CLASSES);
    let mut proto_rng = ChaCha8Rng::seed_from_u64(seed);
    let protos = ClassPrototype::draw_all(classes, &mut proto_rng);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let mut samples = vec![0u8; n * len];
    let mut labels = Vec::with_capacity(n);
    for (i, out) in samples.chunks_exact_mut(len).enumerate() {
        let class = i % classes;
        render_instance(&protos, class, out, &mut rng);
        labels.push(class as u8);
    }
    Dataset {
        name: "synthetic".into(),
        samples,
        labels,
        len,
        classes,
    }
}

/// Synthetic train/test splits: 12 classes, 784-byte samples, 2,400 train and 480 test
/// samples (200 and 40 per class) from the same class prototypes. `test_held_out` is true
/// (the test set is carved from the same generated pool) and `synthetic` is true.
pub fn synthetic_splits(seed: u64) -> Splits {
    const CLASSES: usize = 12;
    const TRAIN_PER_CLASS: usize = 200;
    const TEST_PER_CLASS: usize = 40;
    let n_train = CLASSES * TRAIN_PER_CLASS;
    let all = synthetic(n_train + CLASSES * TEST_PER_CLASS, 784, CLASSES, seed);
    let idx: Vec<usize> = (0..all.n()).collect();
    let mut train = all.subset(&idx[..n_train]);
    train.name = "synthetic/train".into();
    let mut test = all.subset(&idx[n_train..]);
    test.name = "synthetic/test".into();
    Splits {
        train,
        test,
        test_held_out: true,
        synthetic: true,
        relabelled: None,
    }
}
