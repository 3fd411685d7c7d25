//! Conv: the start of a block. Its weight and attributes are checked to be a 1-D convolution
//! the kernels compute (no groups or dilation; a 2-D one only over a unit axis), its padding
//! recognised as none or Keras 'same', and — at the first convolution — which axis of the
//! graph input is the channels and which the sequence.

use super::super::proto::Attrs;
use super::axes::{size, Ax, Role};
use super::{Importer, InputLayout, Pending, Stage};
use crate::net::shape::{conv_out_len, conv_padding};
use crate::net::spec::{MAX_BLOCKS, MAX_FILTERS, MAX_KERNEL};
use crate::net::{Block, Padding};
use anyhow::{anyhow, bail, Result};
use onnx_ir::NodeProto;

/// A convolution's shape along the sequence, as the kernels compute it.
struct ConvShape {
    filters: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    /// Length of its output.
    out_len: usize,
}

/// A per-spatial-axis attribute: `count` values, `default` each when absent.
fn listed(
    v: Option<Vec<i64>>,
    name: &str,
    default: i64,
    count: usize,
    label: &str,
) -> Result<Vec<i64>> {
    match v {
        None => Ok(vec![default; count]),
        Some(v) if v.len() == count => Ok(v),
        Some(v) => bail!("{label}: '{name}' {v:?} has not {count} values"),
    }
}

/// The convolution's shape along the sequence (axis `li`, with `unit` the other spatial axis if
/// rank 4), from its weight's dims `wdims` and its attributes, over an input of length `in_len`.
fn conv_shape(
    a: &Attrs,
    wdims: &[usize],
    li: usize,
    unit: Option<usize>,
    in_len: usize,
    label: &str,
) -> Result<ConvShape> {
    let sp = wdims.len() - 2;
    if let Some(ks) = a.ints("kernel_shape")? {
        if ks.len() != sp || ks.iter().zip(&wdims[2..]).any(|(&k, &d)| k != d as i64) {
            bail!(
                "{label}: kernel_shape {ks:?} disagrees with the weight's {:?}",
                &wdims[2..]
            );
        }
    }
    let strides = listed(a.ints("strides")?, "strides", 1, sp, label)?;
    let dil = listed(a.ints("dilations")?, "dilations", 1, sp, label)?;
    if dil.iter().any(|&d| d != 1) {
        bail!("{label}: dilation {dil:?} is not supported (the kernels compute dilation 1)");
    }
    let s_idx = li - 2;
    let stride = size(strides[s_idx], 1, MAX_KERNEL, &format!("{label}: stride"))?;
    let kernel = size(wdims[li] as i64, 1, MAX_KERNEL, &format!("{label}: kernel"))?;
    let filters = size(
        wdims[0] as i64,
        1,
        MAX_FILTERS,
        &format!("{label}: filters"),
    )?;
    let auto_pad = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
    let pads = conv_pads(a, sp, unit, label)?;
    let pl_pr = (pads[s_idx] as usize, pads[s_idx + sp] as usize);
    let padding = sequence_padding(&auto_pad, pl_pr, in_len, kernel, stride, label)?;
    let out_len = conv_out_len(in_len, kernel, stride, padding).ok_or_else(|| {
        anyhow!("{label}: kernel {kernel} is longer than its input (length {in_len})")
    })?;
    let same_len = conv_out_len(in_len, kernel, stride, Padding::Same);
    if padding == Padding::Same && Some(out_len) != same_len {
        bail!("{label}: inconsistent 'same' output length");
    }
    Ok(ConvShape {
        filters,
        kernel,
        stride,
        padding,
        out_len,
    })
}

/// The `pads` attribute (begins, then ends, of `sp` spatial axes), checked to be in range and
/// to leave the unit axis unpadded.
fn conv_pads(a: &Attrs, sp: usize, unit: Option<usize>, label: &str) -> Result<Vec<i64>> {
    let pads = listed(a.ints("pads")?, "pads", 0, 2 * sp, label)?;
    if pads.iter().any(|&p| !(0..=MAX_KERNEL as i64).contains(&p)) {
        bail!("{label}: pads {pads:?} out of range");
    }
    if let Some(u) = unit {
        let ui = u - 2;
        if pads[ui] != 0 || pads[ui + sp] != 0 {
            bail!("{label}: pads {pads:?} pad the unit axis");
        }
    }
    Ok(pads)
}

/// The padding along the sequence — from `auto_pad`, else from the explicit pads `(pl, pr)` —
/// as one the kernels compute: none, or Keras 'same'.
fn sequence_padding(
    auto_pad: &str,
    (pl, pr): (usize, usize),
    in_len: usize,
    kernel: usize,
    stride: usize,
    label: &str,
) -> Result<Padding> {
    let same = conv_padding(in_len, kernel, stride, Padding::Same);
    Ok(match auto_pad {
        "VALID" => Padding::Valid,
        "SAME_UPPER" => Padding::Same,
        "SAME_LOWER" if same.0 == same.1 => Padding::Same,
        "SAME_LOWER" => bail!(
            "{label}: auto_pad SAME_LOWER puts the odd padding on the left; the kernels pad as Keras/SAME_UPPER does"
        ),
        "NOTSET" | "" => {
            if pl == 0 && pr == 0 {
                Padding::Valid
            } else if (pl, pr) == same {
                Padding::Same
            } else {
                bail!(
                    "{label}: pads ({pl}, {pr}) on a sequence of length {in_len} with kernel {kernel} and stride {stride}; the kernels support no padding or Keras 'same' padding, which is ({}, {}) here",
                    same.0,
                    same.1
                );
            }
        }
        other => bail!("{label}: auto_pad '{other}' is not an ONNX value"),
    })
}

impl Importer {
    pub(super) fn conv(&mut self, n: &NodeProto, a: &Attrs, label: &str) -> Result<()> {
        match self.stage {
            Stage::Pre | Stage::Act | Stage::Pooled => {}
            Stage::Conv => bail!(
                "{label}: a convolution right after another one, without a ReLU between; every block is conv → (BatchNorm) → ReLU → (pool)"
            ),
            s => bail!("{label}: a convolution {}", s.describe()),
        }
        self.finish_block(label)?;
        if self.blocks.len() >= MAX_BLOCKS {
            bail!("{label}: more than {} blocks", MAX_BLOCKS);
        }
        let (li, unit) = self.spatial(label, "convolution")?;
        let in_ch = self.axes[1].size;
        let in_len = self.axes[li].size;
        let (wdims, wdata) = self.conv_weight(n, a, unit, label)?;
        let shape = conv_shape(a, &wdims, li, unit, in_len, label)?;
        if self.stage == Stage::Pre {
            self.input_info = Some(match self.embedding {
                None => self.input_layout(li, label)?,
                Some(dim) => {
                    if self.axes[1] != Ax::new(Role::Chan, dim) {
                        bail!(
                            "{label}: reads axis 1 of {} as its channels, but the input embedding's width {dim} is not there; is the embedding transposed to channels-first?",
                            super::axes::fmt_axes(&self.axes)
                        );
                    }
                    (in_len, 1, InputLayout::SingleChannel)
                }
            });
        }
        let bias = self.conv_bias(n, shape.filters, label)?;
        if wdata.len() != shape.filters * in_ch * shape.kernel {
            bail!("{label}: weight holds {} values", wdata.len());
        }
        self.start_block(label, shape, wdata, bias, li);
        Ok(())
    }

    /// The convolution's weight: its dims (`[filters, in channels, spatial…]`, as many axes as
    /// the input) and values.
    fn conv_weight(
        &self,
        n: &NodeProto,
        a: &Attrs,
        unit: Option<usize>,
        label: &str,
    ) -> Result<(Vec<usize>, Vec<f32>)> {
        let rank = self.axes.len();
        let in_ch = self.axes[1].size;
        let wname = n
            .input
            .get(1)
            .filter(|x| !x.is_empty())
            .ok_or_else(|| anyhow!("{label}: no weight input"))?;
        let w = self.konst(wname, label, "weight")?;
        let wdata = w.floats(&format!("{label}: its weight"))?;
        if w.dims.len() != rank {
            bail!(
                "{label}: weight of shape {:?} for an input of rank {rank}",
                w.dims
            );
        }
        let group = a.int("group")?.unwrap_or(1);
        if group != 1 {
            bail!("{label}: grouped or depthwise convolution (group {group}) is not supported");
        }
        if w.dims[1] != in_ch {
            bail!(
                "{label}: weight of shape {:?} for {in_ch} input channels",
                w.dims
            );
        }
        if let Some(u) = unit {
            if w.dims[u] != 1 {
                bail!("{label}: a 2-D kernel {:?}; only a kernel of height or width 1 over a unit axis is supported", &w.dims[2..]);
            }
        }
        Ok((w.dims.clone(), wdata))
    }

    /// What the first convolution says about the graph input, whose sequence is axis `li`:
    /// `(input_len, input_channels, layout)`.
    fn input_layout(&self, li: usize, label: &str) -> Result<(usize, usize, InputLayout)> {
        let in_ch = self.axes[1].size;
        let in_len = self.axes[li].size;
        let ch_axis = self.axes[1].role;
        let len_axis = self.axes[li].role;
        let layout = match (ch_axis, len_axis) {
            (Role::In(c), Role::In(l)) if c < l => InputLayout::ChannelsFirst,
            (Role::In(_), Role::In(_)) => InputLayout::ChannelsLast,
            (Role::In(_), _) => InputLayout::ChannelsLast,
            _ => InputLayout::SingleChannel,
        };
        if in_ch > 1 && layout == InputLayout::ChannelsLast && !matches!(len_axis, Role::In(_)) {
            bail!("{label}: cannot tell the input's sequence axis");
        }
        Ok((in_len, in_ch, layout))
    }

    /// The convolution's bias, `filters` values (zeros when it has none).
    fn conv_bias(&self, n: &NodeProto, filters: usize, label: &str) -> Result<Vec<f32>> {
        Ok(match n.input.get(2).filter(|x| !x.is_empty()) {
            Some(b) => {
                let c = self.konst(b, label, "bias")?;
                let v = c.floats(&format!("{label}: its bias"))?;
                if v.len() != filters {
                    bail!("{label}: bias of {} values for {filters} filters", v.len());
                }
                v
            }
            None => vec![0.0; filters],
        })
    }

    /// A new pending block from a convolution whose output's sequence is axis `li`.
    fn start_block(
        &mut self,
        label: &str,
        shape: ConvShape,
        weight: Vec<f32>,
        bias: Vec<f32>,
        li: usize,
    ) {
        self.pending = Some(Pending {
            label: label.to_string(),
            block: Block {
                filters: shape.filters,
                kernel: shape.kernel,
                stride: shape.stride,
                padding: shape.padding,
                batch_norm: false,
                pool: None,
                dropout: 0.0,
            },
            weight,
            bias,
            bn: None,
            affine: None,
            max_before_relu: false,
            relu: false,
        });
        self.axes[1] = Ax::new(Role::Chan, shape.filters);
        self.axes[li] = Ax::new(Role::Len, shape.out_len);
        self.channels = shape.filters;
        self.len = shape.out_len;
        self.stage = Stage::Conv;
    }
}
