//! Models built from a spec and flat parameters.

use burn::module::Param;
use burn::nn::{Linear, Relu};
use burn::prelude::*;
use protocol::experiment::ModelSpec;

use crate::WorkloadError;

/// The MNIST multi-layer perceptron: inputs → hidden (ReLU) → classes.
#[derive(Module, Debug)]
pub struct Mlp {
    pub hidden: Linear,
    pub activation: Relu,
    pub output: Linear,
}

impl Mlp {
    /// Logits for a batch of flattened inputs `[batch, inputs]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let x = self.activation.forward(self.hidden.forward(input));
        self.output.forward(x)
    }

    /// Builds the model for `spec` from parameters in the spec's canonical order.
    pub fn from_flat(spec: &ModelSpec, flat: &[f32], device: &Device) -> Result<Self, WorkloadError> {
        check_len(spec, flat)?;
        let ModelSpec::Mlp { inputs, hidden, classes } = *spec;
        let (i, h, c) = (inputs as usize, hidden as usize, classes as usize);
        let mut rest = flat;
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head.to_vec()
        };
        let linear = |w: Vec<f32>, b: Vec<f32>, d_in: usize, d_out: usize| Linear {
            weight: Param::from_tensor(Tensor::<2>::from_data(TensorData::new(w, [d_in, d_out]), device)),
            bias: Some(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(b, [d_out]), device))),
        };
        let (w1, b1) = (take(i * h), take(h));
        let (w2, b2) = (take(h * c), take(c));
        Ok(Self { hidden: linear(w1, b1, i, h), activation: Relu::new(), output: linear(w2, b2, h, c) })
    }

    /// The parameters in canonical order, read back from the device (async: WebGPU can only
    /// read asynchronously in a browser).
    pub async fn to_flat(&self) -> Result<Vec<f32>, WorkloadError> {
        let mut out = Vec::new();
        for linear in [&self.hidden, &self.output] {
            out.extend(read(linear.weight.val().flatten::<1>(0, 1)).await?);
            if let Some(bias) = &linear.bias {
                out.extend(read(bias.val()).await?);
            }
        }
        Ok(out)
    }
}

/// Reads a rank-1 float tensor back to the host.
pub async fn read(tensor: Tensor<1>) -> Result<Vec<f32>, WorkloadError> {
    let data = tensor.into_data_async().await.map_err(|e| WorkloadError::Readback(format!("{e:?}")))?;
    let data = data.convert::<f32>();
    data.as_slice::<f32>().map(|s| s.to_vec()).map_err(|e| WorkloadError::Readback(format!("{e:?}")))
}

fn check_len(spec: &ModelSpec, flat: &[f32]) -> Result<(), WorkloadError> {
    let expected = spec.parameter_count();
    if flat.len() != expected {
        return Err(WorkloadError::ParameterCount { expected, actual: flat.len() });
    }
    Ok(())
}

/// Deterministic genesis parameters: Kaiming-uniform weights from a seeded generator and zero
/// biases, so every peer that builds the genesis for the same spec and seed gets the same bytes.
pub fn genesis_parameters(spec: &ModelSpec, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(spec.parameter_count());
    for (name, shape) in spec.parameters() {
        let n: usize = shape.iter().product();
        if name.ends_with(".bias") {
            out.extend(std::iter::repeat_n(0.0, n));
        } else {
            let bound = (6.0 / shape[0] as f64).sqrt() / 3f64.sqrt();
            out.extend((0..n).map(|_| ((rng.next_unit() * 2.0 - 1.0) * bound) as f32));
        }
    }
    out
}

/// A tiny, portable PRNG (SplitMix64): the genesis and the dataset split must not depend on a
/// crate's RNG algorithm, so every machine derives the same bytes from the same seed.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
