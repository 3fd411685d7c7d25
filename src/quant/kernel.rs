//! Weight packing and per-channel constants of the int8 kernels.
//!
//! Layout of a layer's int8 weights (conv rows `[kernel][in]`, dense rows `[in]`): each row
//! zero-padded to `row4`, a multiple of 4 bytes, then filters in groups of up to four, the
//! group's rows interleaved by 4-byte word: `[group][row4 / 4][filter of the group][4]`, four
//! bytes to a little-endian 32-bit word. One pointer then walks a group's weights in order while
//! one input word feeds four filters. Per output channel a [`ChanConsts`] holds the bias and the
//! requantization in the form the kernel applies it ([`super::requantize_fast`]). What this
//! layout costs (words, bytes, window ranges) is [`crate::net::int8`]'s, for the cost model.

use super::fast_shifts;
use super::lower::QuantLayer;
use crate::net::int8::row4;
use crate::net::plan::ConvOp;
use crate::net::EMBEDDING_ROWS;
use serde::Serialize;

/// Pack `rows` int8 rows of `row` bytes into the grouped, interleaved word layout.
pub fn pack_rows(w: &[i8], rows: usize, row: usize) -> Vec<u32> {
    assert_eq!(w.len(), rows * row, "weights do not hold rows × row bytes");
    let r4 = row4(row);
    let mut out = Vec::with_capacity(rows * r4 / 4);
    for g in (0..rows).step_by(4) {
        let m = (rows - g).min(4);
        for chunk in 0..r4 / 4 {
            for k in 0..m {
                let mut bytes = [0u8; 4];
                for (b, byte) in bytes.iter_mut().enumerate() {
                    let e = chunk * 4 + b;
                    if e < row {
                        *byte = w[(g + k) * row + e] as u8;
                    }
                }
                out.push(u32::from_le_bytes(bytes));
            }
        }
    }
    out
}

/// One output channel's constants as the kernel reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChanConsts {
    pub bias: i32,
    pub m0: i32,
    pub rnd: i32,
    pub lsh: u8,
    pub rsh: u8,
}

/// Channel `c`'s bias as the kernel adds it. The kernels store an int8 activation `q` as the
/// byte `u = q + 128` and multiply the bytes, so a layer whose input zero point `zp` is not
/// −128 (the layer after an input embedding) computes `Σ (q − zp)·w = Σ u·w − (128 + zp)·Σ w`:
/// the constant term is folded into the bias. Exact, since the embedding writes every tap
/// (padding included) that the conv reads. [`QuantLayer::acc_bound`] covers the sums.
pub fn kernel_bias(q: &QuantLayer, c: usize) -> i64 {
    let row = q.weights.len() / q.bias.len().max(1);
    let sum_w: i64 = q.weights[c * row..(c + 1) * row]
        .iter()
        .map(|&w| w as i64)
        .sum();
    q.bias[c] as i64 - (128 + q.input.zero_point) as i64 * sum_w
}

/// The int32 lookup table of a lookup-table conv (`[out][kernel][256]`): entry `(f, j, b)` is
/// `Σ_d w[f][j][d] · (t[b][d] − zp)`, filter `f`'s tap `j` on byte `b`'s int8 row. Every sum of
/// a window's entries is then the rows form's accumulator exactly (bounded by `acc_bound`).
pub fn lookup_table_int8(c: &ConvOp, q: &QuantLayer) -> Vec<i32> {
    let dim = c.in_channels;
    let zp = q.input.zero_point;
    let mut lut = Vec::with_capacity(c.out_channels * c.kernel * EMBEDDING_ROWS);
    for tap in q.weights.chunks_exact(dim) {
        lut.extend(q.table.chunks_exact(dim).map(|row| {
            row.iter()
                .zip(tap)
                .map(|(&t, &w)| (t as i32 - zp) * w as i32)
                .sum::<i32>()
        }));
    }
    lut
}

/// Per-channel constants of a conv or dense layer (`lut`: a lookup-table conv, whose table
/// already holds the input's zero point, so its bias is the quantizer's).
pub fn chan_consts(q: &QuantLayer, lut: bool) -> Vec<ChanConsts> {
    (0..q.bias.len())
        .map(|c| {
            let (lsh, rnd, rsh) = fast_shifts(q.shift[c]);
            ChanConsts {
                // In range: checked by the quantizer (`quantize_channel`).
                bias: if lut {
                    q.bias[c]
                } else {
                    kernel_bias(q, c) as i32
                },
                m0: q.multiplier[c],
                rnd,
                lsh: lsh as u8,
                rsh: rsh as u8,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_packed_in_groups_of_four() {
        // 5 rows of 3 bytes: row4 = 4; a group of 4 then a group of 1.
        let w: Vec<i8> = (0..15).map(|v| v as i8 - 7).collect();
        let p = pack_rows(&w, 5, 3);
        assert_eq!(p.len(), 5);
        for (k, word) in p.iter().enumerate() {
            let b = word.to_le_bytes();
            assert_eq!(
                [b[0] as i8, b[1] as i8, b[2] as i8, b[3] as i8],
                [w[k * 3], w[k * 3 + 1], w[k * 3 + 2], 0]
            );
        }
        // 2 rows of 6: row4 = 8, words [chunk][filter].
        let w: Vec<i8> = (1..=12).collect();
        let p = pack_rows(&w, 2, 6);
        let bytes: Vec<u8> = p.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(bytes, [1, 2, 3, 4, 7, 8, 9, 10, 5, 6, 0, 0, 11, 12, 0, 0]);
    }
}
