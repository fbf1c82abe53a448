//! The workload on the Flex CPU backend: a window learns, deltas are exact, checkpoints
//! round-trip.

use burn::prelude::Device;
use bonfire_workload::checkpoint;
use bonfire_workload::data::Examples;
use bonfire_workload::model::{genesis_parameters, Mlp};
use bonfire_workload::{evaluate, train_window, WindowConfig};
use futures::executor::block_on;
use protocol::dataset::RecordLayout;
use protocol::experiment::ModelSpec;

fn spec() -> ModelSpec {
    ModelSpec::Mlp { inputs: 784, hidden: 32, classes: 10 }
}

/// A synthetic, learnable dataset: class k lights up pixel band k.
fn synthetic(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let label = (i % 10) as u8;
        let mut rec = vec![0u8; 785];
        for p in 0..784 {
            if p / 78 == label as usize {
                rec[p] = 200;
            } else {
                rec[p] = ((i * 31 + p * 7) % 40) as u8;
            }
        }
        rec[784] = label;
        out.extend(rec);
    }
    out
}

#[test]
fn a_training_window_lowers_validation_loss() {
    let device = Device::flex();
    let examples = Examples::decode(&synthetic(200), &RecordLayout::mnist()).unwrap();
    let base = genesis_parameters(&spec(), 7);
    let before = block_on(evaluate(&device, &spec(), &base, &examples)).unwrap();
    let config = WindowConfig { batch_size: 20, local_steps: 20, learning_rate: 3e-3 };
    let mut steps_seen = 0;
    let result = block_on(train_window(&device, &spec(), &base, &examples, config, |s| steps_seen = s)).unwrap();
    assert_eq!(steps_seen, 20);
    assert_eq!(result.delta.len(), spec().parameter_count());
    let trained = protocol::merge::apply_delta(&base, &result.delta, 1.0).unwrap();
    let after = block_on(evaluate(&device, &spec(), &trained, &examples)).unwrap();
    assert!(after.val_loss < before.val_loss, "loss {} → {}", before.val_loss, after.val_loss);
    assert!(after.val_accuracy > 0.9, "accuracy {}", after.val_accuracy);
    assert!(result.mean_loss.is_finite());
}

#[test]
fn parameters_round_trip_through_the_model_and_safetensors() {
    let device = Device::flex();
    let params = genesis_parameters(&spec(), 1);
    let model = Mlp::from_flat(&spec(), &params, &device).unwrap();
    assert_eq!(block_on(model.to_flat()).unwrap(), params);
    let bytes = checkpoint::to_safetensors(&spec(), &params).unwrap();
    assert_eq!(checkpoint::from_safetensors(&spec(), &bytes).unwrap(), params);
    let other = ModelSpec::Mlp { inputs: 784, hidden: 16, classes: 10 };
    assert!(checkpoint::from_safetensors(&other, &bytes).is_err());
}

#[test]
fn genesis_is_deterministic_and_records_are_checked() {
    assert_eq!(genesis_parameters(&spec(), 3), genesis_parameters(&spec(), 3));
    assert_ne!(genesis_parameters(&spec(), 3), genesis_parameters(&spec(), 4));
    let mut bad = synthetic(2);
    bad[784] = 12;
    assert!(Examples::decode(&bad, &RecordLayout::mnist()).unwrap_err().to_string().contains("label 12"));
    assert!(Examples::decode(&bad[..700], &RecordLayout::mnist()).is_err());
}
