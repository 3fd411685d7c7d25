//! The layers a walk recognises: convolutions (with their fused ReLU and constants), the
//! pooling fused into the last one, the MEAN over the length and the dense head. Each checks
//! the operator's shapes and options against what the kernels compute and takes over the
//! running activation.

use super::*;

impl<'g, 'a> Walker<'g, 'a> {
    pub(super) fn conv(&mut self, op: &tflite::Operator<'a>, label: &str) -> Result<()> {
        ensure!(
            self.stage == Stage::Features,
            "{label}: a convolution after the global pooling"
        );
        let input = self.data_input(op, label)?;
        let width = length_is_width(&input, label)?;
        let (l, c) = if width {
            (input.shape[2], input.shape[3])
        } else {
            (input.shape[1], input.shape[3])
        };
        ensure!(
            (l, c) == (self.len, self.ch),
            "{label}: input {} of shape {:?} is not the previous layer's {} × {}",
            input.label(),
            input.shape,
            self.len,
            self.ch
        );
        let opts = op
            .builtin_options_as_conv_2_doptions()
            .ok_or_else(|| anyhow!("{label} has no Conv2DOptions"))?;
        let (stride, dilation, other_dilation) = if width {
            (
                opts.stride_w(),
                opts.dilation_w_factor(),
                opts.dilation_h_factor(),
            )
        } else {
            (
                opts.stride_h(),
                opts.dilation_h_factor(),
                opts.dilation_w_factor(),
            )
        };
        ensure!(
            dilation == 1 && other_dilation == 1,
            "{label}: dilation {dilation} (only undilated convolutions are supported)"
        );
        ensure!(stride >= 1, "{label}: stride {stride}");
        let stride = stride as usize;
        let padding = padding(opts.padding(), label)?;
        let filter = self.g.tensor(self.op_input(op, 1, label)?)?;
        ensure!(
            self.g.is_constant(&filter),
            "{label}: its filter {} is not a constant",
            filter.label()
        );
        ensure!(
            filter.shape.len() == 4,
            "{label}: filter {} of shape {:?} is not [out, height, width, in]",
            filter.label(),
            filter.shape
        );
        let (o, kh, kw, fi) = (
            filter.shape[0],
            filter.shape[1],
            filter.shape[2],
            filter.shape[3],
        );
        let (kernel, unit) = if width { (kw, kh) } else { (kh, kw) };
        ensure!(
            unit == 1 && fi == c && o >= 1 && kernel >= 1,
            "{label}: filter {} of shape {:?} is not a 1-D kernel over {c} channels",
            filter.label(),
            filter.shape
        );
        let out = self.single_output(op, label)?;
        let out_len = crate::net::shape::conv_out_len(l, kernel, stride, padding)
            .ok_or_else(|| anyhow!("{label}: a kernel of {kernel} over {l} values, 'valid'"))?;
        let act = opts.fused_activation_function();
        let in_q = self.q;
        self.set_output(&out, out_len, o, label)?;
        let relu6_max = match act {
            ActivationFunctionType::RELU => None,
            ActivationFunctionType::RELU6 if self.int8 => {
                let (s, zp) = self.q.expect("int8 output");
                Some((zp + (6.0 / s).round() as i32).min(127))
            }
            other => bail!(
                "{label}: fused activation {}: the kernels compute a convolution with a ReLU \
                 after it (Keras: Conv1D(..., activation='relu'), or Conv1D → BatchNormalization \
                 → ReLU)",
                act_name(other)
            ),
        };
        if let Some(m) = relu6_max {
            ensure!(
                m >= 127,
                "{label}: the fused ReLU6 clamps at int8 {m}, below 127: the kernels clamp a \
                 ReLU only at 0"
            );
            self.notes.push(format!(
                "{label}: its ReLU6 never clamps at 6 in int8 (6 is beyond the output's range): \
                 computed as a ReLU"
            ));
        }
        let bias = self.optional_input(op, 2);
        let consts = if self.int8 {
            let w = self.g.i8s(&filter)?;
            let scales = weight_scales(&filter, o, 0, label)?;
            let b = match bias {
                Some(t) => self.int32_bias(t, o, label)?,
                None => vec![0; o],
            };
            Consts::Int8 {
                w,
                scales,
                b,
                input: in_q.expect("int8 input"),
                output: self.q.expect("int8 output"),
            }
        } else {
            let w = self.g.f32s(&filter)?;
            let b = match bias {
                Some(t) => self.f32_bias(t, o, label)?,
                None => vec![0.0; o],
            };
            Consts::F32 { w, b }
        };
        self.convs.push(Conv {
            filters: o,
            kernel,
            stride,
            padding,
            pool: None,
            consts,
        });
        Ok(())
    }

    /// Bias tensor `t` of a layer with `n` outputs, read by `read` (int32 or f32).
    fn bias<T>(
        &self,
        t: i32,
        n: usize,
        label: &str,
        read: impl Fn(&Graph<'a>, &TensorInfo) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let t = self.g.tensor(t)?;
        ensure!(
            t.elements() == n,
            "{label}: bias {} has {} values for {n} outputs",
            t.label(),
            t.elements()
        );
        read(self.g, &t).with_context(|| format!("{label}: its bias"))
    }

    fn int32_bias(&self, t: i32, n: usize, label: &str) -> Result<Vec<i32>> {
        self.bias(t, n, label, Graph::i32s)
    }

    fn f32_bias(&self, t: i32, n: usize, label: &str) -> Result<Vec<f32>> {
        self.bias(t, n, label, Graph::f32s)
    }

    pub(super) fn pool(
        &mut self,
        op: &tflite::Operator<'a>,
        code: BuiltinOperator,
        label: &str,
    ) -> Result<()> {
        let input = self.data_input(op, label)?;
        let width = length_is_width(&input, label)?;
        let opts = op
            .builtin_options_as_pool_2_doptions()
            .ok_or_else(|| anyhow!("{label} has no Pool2DOptions"))?;
        let (window, stride, unit_window) = if width {
            (opts.filter_width(), opts.stride_w(), opts.filter_height())
        } else {
            (opts.filter_height(), opts.stride_h(), opts.filter_width())
        };
        ensure!(
            window >= 1 && unit_window == 1 && stride == window,
            "{label}: a window of {window} with stride {stride}: the kernels pool 1-D windows \
             with stride = window (Keras's default)"
        );
        let window = window as usize;
        let len = self.len;
        let same_is_valid = len % window == 0;
        match padding(opts.padding(), label)? {
            Padding::Valid => {}
            Padding::Same if same_is_valid => {}
            Padding::Same => bail!(
                "{label}: 'same' padding over {len} values with a window of {window} pads the \
                 tail; the kernels pool 'valid' (use padding='valid')"
            ),
        }
        ensure!(
            matches!(
                opts.fused_activation_function(),
                ActivationFunctionType::NONE | ActivationFunctionType::RELU
            ),
            "{label}: fused activation {}",
            act_name(opts.fused_activation_function())
        );
        let conv = match (self.stage, self.convs.last_mut()) {
            (Stage::Features, Some(c)) if c.pool.is_none() => c,
            _ => bail!("{label}: pooling that does not follow a convolution"),
        };
        let kind = if code == BuiltinOperator::MAX_POOL_2D {
            PoolKind::Max
        } else {
            PoolKind::Avg
        };
        conv.pool = Some((kind, window));
        ensure!(
            len >= window,
            "{label}: a window of {window} over {len} values"
        );
        let out = self.single_output(op, label)?;
        let (q, ch) = (self.q, self.ch);
        self.set_output(&out, len / window, ch, label)?;
        ensure!(
            self.q == q,
            "{label}: its output is quantized {:?}, its input {q:?} (TFLite pools keep the \
             input's parameters)",
            self.q
        );
        Ok(())
    }

    pub(super) fn mean(&mut self, op: &tflite::Operator<'a>, label: &str) -> Result<()> {
        ensure!(
            self.stage == Stage::Features && !self.convs.is_empty(),
            "{label}: a MEAN that is not the global average pooling after the convolutions"
        );
        let input = self.data_input(op, label)?;
        let axes_t = self.g.tensor(self.op_input(op, 1, label)?)?;
        let axes = self
            .g
            .i32s(&axes_t)
            .with_context(|| format!("{label}: its axes"))?;
        let rank = input.shape.len();
        let reduced: Vec<usize> = axes
            .iter()
            .map(|&a| usize::try_from(if a < 0 { a + rank as i32 } else { a }).unwrap_or(0))
            .collect();
        // The length and channel axes: the non-unit axes after the batch, in that order.
        let nonunit: Vec<usize> = (1..rank).filter(|&i| input.shape[i] != 1).collect();
        let (len_axis, ch_axis) = match (self.len != 1, self.ch != 1, nonunit.as_slice()) {
            (true, true, [l, c]) => (Some(*l), Some(*c)),
            (true, false, [l]) => (Some(*l), None),
            (false, true, [c]) => (None, Some(*c)),
            (false, false, []) => (None, None),
            _ => bail!(
                "{label}: input {} of shape {:?}",
                input.label(),
                input.shape
            ),
        };
        let ok = !reduced.is_empty()
            && reduced.iter().all(|&a| (1..rank).contains(&a))
            && len_axis.is_none_or(|a| reduced.contains(&a))
            && ch_axis.is_none_or(|a| !reduced.contains(&a))
            && reduced
                .iter()
                .all(|&a| Some(a) == len_axis || input.shape[a] == 1);
        ensure!(
            ok,
            "{label}: MEAN over axes {axes:?} of {:?} is not the mean over the length",
            input.shape
        );
        let out = self.single_output(op, label)?;
        let in_q = self.q;
        let ch = self.ch;
        self.set_output(&out, 1, ch, label)?;
        if self.int8 {
            ensure!(
                self.q != in_q,
                "{label}: an int8 MEAN whose output has its input's scale and zero point: \
                 TFLite computes it as a truncating integer mean, which the kernels do not; \
                 the converter gives MEAN its own output parameters (as for Keras's \
                 GlobalAveragePooling1D)"
            );
            self.mean_out = self.q;
        }
        self.stage = Stage::Pooled;
        Ok(())
    }

    pub(super) fn dense(&mut self, op: &tflite::Operator<'a>, label: &str) -> Result<()> {
        ensure!(
            self.stage == Stage::Pooled,
            "{label}: a FULLY_CONNECTED {}",
            if self.stage == Stage::Features {
                "on the unpooled sequence: the kernels' head is global average pooling \
                 (GlobalAveragePooling1D) then one dense layer"
            } else {
                "after the head's dense layer: the head has one"
            }
        );
        self.data_input(op, label)?;
        let opts = op
            .builtin_options_as_fully_connected_options()
            .ok_or_else(|| anyhow!("{label} has no FullyConnectedOptions"))?;
        ensure!(
            opts.fused_activation_function() == ActivationFunctionType::NONE,
            "{label}: fused activation {} on the head (its outputs are the logits)",
            act_name(opts.fused_activation_function())
        );
        ensure!(
            opts.weights_format() == tflite::FullyConnectedOptionsWeightsFormat::DEFAULT,
            "{label}: shuffled weights"
        );
        let w = self.g.tensor(self.op_input(op, 1, label)?)?;
        ensure!(
            self.g.is_constant(&w) && w.shape.len() == 2 && w.shape[1] == self.ch,
            "{label}: weights {} of shape {:?} are not a constant [classes, {}]",
            w.label(),
            w.shape,
            self.ch
        );
        let classes = w.shape[0];
        ensure!(classes >= 1, "{label}: no outputs");
        let out = self.single_output(op, label)?;
        let in_q = self.q;
        self.set_output(&out, 1, classes, label)?;
        let bias = self.optional_input(op, 2);
        let consts = if self.int8 {
            Consts::Int8 {
                w: self.g.i8s(&w)?,
                scales: weight_scales(&w, classes, 0, label)?,
                b: match bias {
                    Some(t) => self.int32_bias(t, classes, label)?,
                    None => vec![0; classes],
                },
                input: in_q.expect("int8 input"),
                output: self.q.expect("int8 output"),
            }
        } else {
            Consts::F32 {
                w: self.g.f32s(&w)?,
                b: match bias {
                    Some(t) => self.f32_bias(t, classes, label)?,
                    None => vec![0.0; classes],
                },
            }
        };
        self.dense = Some((classes, consts));
        self.stage = Stage::Logits;
        Ok(())
    }
}

/// Per-output weight scales of an int8 filter (per-channel along `dim`, or one for all),
/// checking that the weights are symmetric (zero point 0).
fn weight_scales(t: &TensorInfo, outputs: usize, dim: usize, label: &str) -> Result<Vec<f32>> {
    let q = t
        .quant
        .as_ref()
        .ok_or_else(|| anyhow!("{label}: int8 weights {} without quantization", t.label()))?;
    ensure!(
        q.zero_points.iter().all(|&z| z == 0),
        "{label}: weights {} have non-zero zero points (TFLite's int8 weights are symmetric)",
        t.label()
    );
    ensure!(
        q.scales.iter().all(|s| s.is_finite() && *s > 0.0),
        "{label}: weights {} have a scale that is not a positive number",
        t.label()
    );
    match q.scales.len() {
        1 => Ok(vec![q.scales[0]; outputs]),
        n if n == outputs && q.dim == dim => Ok(q.scales.clone()),
        n => bail!(
            "{label}: weights {} have {n} scales along dimension {} for {outputs} outputs",
            t.label(),
            q.dim
        ),
    }
}
