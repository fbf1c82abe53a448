//! `cargo xtask bench`: throughput of the training window and evaluation on the Flex CPU
//! backend, as ratios against a baseline measured in the same run — a plain-Rust forward pass
//! of the same MLP (three nested loops, no burn), so machine speed cancels out.

use std::time::Instant;

use bonfire_workload::data::Examples;
use bonfire_workload::model::genesis_parameters;
use bonfire_workload::{evaluate, train_window, WindowConfig};
use burn::prelude::Device;
use futures::executor::block_on;
use protocol::dataset::RecordLayout;
use protocol::experiment::ModelSpec;

const SPEC: ModelSpec = ModelSpec::Mlp { inputs: 784, hidden: 128, classes: 10 };

fn examples(n: usize) -> Examples {
    let bytes: Vec<u8> = (0..n * 785).map(|i| if i % 785 == 784 { (i / 785 % 10) as u8 } else { (i * 31 % 251) as u8 }).collect();
    Examples::decode(&bytes, &RecordLayout::mnist()).unwrap()
}

/// The baseline: the MLP's forward pass in plain loops, examples per second.
fn naive_forward(params: &[f32], ex: &Examples) -> f64 {
    let (i, h, c) = (784, 128, 10);
    let (w1, rest) = params.split_at(i * h);
    let (b1, rest) = rest.split_at(h);
    let (w2, b2) = rest.split_at(h * c);
    let start = Instant::now();
    let mut sink = 0f32;
    for x in ex.inputs.chunks_exact(i) {
        let mut hidden = b1.to_vec();
        for (k, &xk) in x.iter().enumerate() {
            let row = &w1[k * h..(k + 1) * h];
            for (hj, wj) in hidden.iter_mut().zip(row) {
                *hj += xk * wj;
            }
        }
        let mut out = b2.to_vec();
        for (j, hj) in hidden.iter().enumerate() {
            let hj = hj.max(0.0);
            for (o, w) in out.iter_mut().zip(&w2[j * c..(j + 1) * c]) {
                *o += hj * w;
            }
        }
        sink += out[0];
    }
    std::hint::black_box(sink);
    ex.len() as f64 / start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "benchmark: run with cargo xtask bench"]
fn bench_training_window_and_evaluation_against_a_plain_forward_pass() {
    let device = Device::flex();
    let params = genesis_parameters(&SPEC, 1);
    let train = examples(512);
    let valid = examples(2000);
    let baseline = naive_forward(&params, &valid);
    let config = WindowConfig { batch_size: 32, local_steps: 32, learning_rate: 2e-3 };
    // Warm up once, then measure.
    block_on(train_window(&device, &SPEC, &params, &train, config, |_| {})).unwrap();
    let start = Instant::now();
    let result = block_on(train_window(&device, &SPEC, &params, &train, config, |_| {})).unwrap();
    let train_rate = result.examples_processed as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    block_on(evaluate(&device, &SPEC, &params, &valid)).unwrap();
    let eval_rate = valid.len() as f64 / start.elapsed().as_secs_f64();
    println!("baseline (plain-Rust forward):  {baseline:>10.0} examples/s");
    println!("flex training window (32×32):   {train_rate:>10.0} examples/s  ratio {:.3}", train_rate / baseline);
    println!("flex evaluation (2000):         {eval_rate:>10.0} examples/s  ratio {:.3}", eval_rate / baseline);
}
