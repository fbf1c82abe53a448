//! Attestations and heads: a validator's signed verdict on a candidate checkpoint, and the
//! canonical checkpoint a quorum of them promotes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::experiment::ExperimentManifest;
use crate::ids::{canonical_bytes, BlobId, HeadId, UpdateId};
use crate::signing::{Signable, Signed, VerifyError};
use crate::update::Runtime;
use crate::UnixMillis;

/// Held-out evaluation of a checkpoint, measured by a validator.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub val_loss: f32,
    pub val_accuracy: f32,
    pub val_examples: u32,
}

/// One update merged into a head, with the weight its lease granted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub update: UpdateId,
    pub holder: String,
    pub runtime: Runtime,
    /// Examples the lease granted: the merge weight.
    pub examples: u32,
}

/// The root committing to a head's inputs: the hash of the contributions list.
pub fn inputs_root(contributions: &[Contribution]) -> BlobId {
    BlobId::of(&canonical_bytes(&contributions.to_vec()))
}

/// A validator's signed statement about one candidate head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    pub experiment: String,
    pub round: u64,
    pub base_head: Option<HeadId>,
    pub checkpoint: BlobId,
    pub inputs_root: BlobId,
    pub metrics: Metrics,
}

impl Signable for Attestation {
    const DOMAIN: &'static str = "attestation";
}

/// A canonical checkpoint of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub experiment: String,
    pub round: u64,
    pub parent: Option<HeadId>,
    pub checkpoint: BlobId,
    pub metrics: Metrics,
    pub contributions: Vec<Contribution>,
    /// The quorum of attestations that promoted it.
    pub certificate: Vec<Signed<Attestation>>,
    pub promoted_at: UnixMillis,
}

/// Why a head's certificate does not hold.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CertificateError {
    #[error("attestation by {signer} is invalid: {source}")]
    BadSignature { signer: String, source: VerifyError },
    #[error("attestation by {signer}, who is not in the experiment's validator set")]
    NotAValidator { signer: String },
    #[error("attestation by {signer} is for a different {field}")]
    Mismatch { signer: String, field: &'static str },
    #[error("only {valid} distinct validators attested; the quorum is {quorum}")]
    NoQuorum { valid: usize, quorum: u32 },
    #[error("a quorum of {quorum} out of {validators} validators is not a valid experiment setting")]
    BadQuorum { quorum: u32, validators: usize },
    #[error("a round-0 head must be the experiment's genesis checkpoint, with no parent and no inputs, attested by the experiment's author")]
    NotTheGenesis,
}

impl CertificateError {
    /// A short label for the reason (metrics, logs): `bad-signature`, `not-a-validator`,
    /// `mismatch`, `no-quorum`, `bad-quorum`, `not-the-genesis`.
    pub fn label(&self) -> &'static str {
        match self {
            CertificateError::BadSignature { .. } => "bad-signature",
            CertificateError::NotAValidator { .. } => "not-a-validator",
            CertificateError::Mismatch { .. } => "mismatch",
            CertificateError::NoQuorum { .. } => "no-quorum",
            CertificateError::BadQuorum { .. } => "bad-quorum",
            CertificateError::NotTheGenesis => "not-the-genesis",
        }
    }
}

impl Head {
    /// The head id: the hash of the whole head, certificate included.
    pub fn id(&self) -> HeadId {
        HeadId::of(&canonical_bytes(self))
    }

    /// The attestation body every validator must have signed for this head.
    pub fn expected_attestation(&self) -> Attestation {
        Attestation {
            experiment: self.experiment.clone(),
            round: self.round,
            base_head: self.parent,
            checkpoint: self.checkpoint,
            inputs_root: inputs_root(&self.contributions),
            metrics: self.metrics,
        }
    }

    /// Checks a head against its signed experiment. The genesis (round 0) is defined by the
    /// manifest: its checkpoint, attested by the manifest's author. Every later head needs a
    /// quorum of the validator set.
    pub fn verify_for(&self, experiment: &Signed<ExperimentManifest>) -> Result<(), CertificateError> {
        let manifest = &experiment.body;
        if self.round == 0 {
            let genesis = self.parent.is_none()
                && self.contributions.is_empty()
                && self.checkpoint == manifest.genesis
                && self.experiment == manifest.id;
            if !genesis {
                return Err(CertificateError::NotTheGenesis);
            }
            return self.verify_certificate(std::slice::from_ref(&experiment.signer), 1);
        }
        if self.experiment != manifest.id {
            return Err(CertificateError::Mismatch { signer: String::new(), field: "experiment" });
        }
        self.verify_certificate(&manifest.validators, manifest.quorum)
    }

    /// Checks that a quorum of distinct validators from `validators` signed this exact head.
    pub fn verify_certificate(&self, validators: &[String], quorum: u32) -> Result<(), CertificateError> {
        // A quorum of 0 would accept an empty certificate; one above the set, none at all.
        if quorum == 0 || quorum as usize > validators.len() {
            return Err(CertificateError::BadQuorum { quorum, validators: validators.len() });
        }
        let expected = self.expected_attestation();
        let mut signers = BTreeSet::new();
        for signed in &self.certificate {
            let signer = signed.signer.clone();
            let body = signed
                .verify()
                .map_err(|source| CertificateError::BadSignature { signer: signer.clone(), source })?;
            if !validators.contains(&signer) {
                return Err(CertificateError::NotAValidator { signer });
            }
            let field = if body.experiment != expected.experiment {
                Some("experiment")
            } else if body.round != expected.round {
                Some("round")
            } else if body.base_head != expected.base_head {
                Some("base head")
            } else if body.checkpoint != expected.checkpoint {
                Some("checkpoint")
            } else if body.inputs_root != expected.inputs_root {
                Some("set of inputs")
            } else if body.metrics != expected.metrics {
                Some("metrics")
            } else {
                None
            };
            if let Some(field) = field {
                return Err(CertificateError::Mismatch { signer, field });
            }
            signers.insert(signer);
        }
        if signers.len() < quorum as usize {
            return Err(CertificateError::NoQuorum { valid: signers.len(), quorum });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Identity;

    fn head() -> Head {
        Head {
            experiment: "e".into(),
            round: 3,
            parent: Some(HeadId::of(b"parent")),
            checkpoint: BlobId::of(b"weights"),
            metrics: Metrics { val_loss: 0.3, val_accuracy: 0.9, val_examples: 2000 },
            contributions: vec![Contribution {
                update: UpdateId::of(b"u"),
                holder: "p".into(),
                runtime: Runtime::Browser,
                examples: 100,
            }],
            certificate: vec![],
            promoted_at: 0,
        }
    }

    fn certified(by: &[&Identity]) -> Head {
        let mut h = head();
        h.certificate = by.iter().map(|v| v.sign(h.expected_attestation())).collect();
        h
    }

    #[test]
    fn a_quorum_of_validators_certifies_a_head() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let set = vec![a.peer_id().to_string(), b.peer_id().to_string()];
        certified(&[&a, &b]).verify_certificate(&set, 2).unwrap();
        assert_eq!(
            certified(&[&a]).verify_certificate(&set, 2),
            Err(CertificateError::NoQuorum { valid: 1, quorum: 2 })
        );
        // The same validator twice is still one vote.
        assert!(certified(&[&a, &a]).verify_certificate(&set, 2).is_err());
        assert!(matches!(certified(&[]).verify_certificate(&set, 0), Err(CertificateError::BadQuorum { .. })));
        assert!(matches!(certified(&[&a, &b]).verify_certificate(&set, 3), Err(CertificateError::BadQuorum { .. })));
    }

    #[test]
    fn an_attestation_from_outside_the_validator_set_never_counts() {
        let (a, outsider) = (Identity::generate(), Identity::generate());
        let set = vec![a.peer_id().to_string()];
        assert!(matches!(
            certified(&[&outsider]).verify_certificate(&set, 1),
            Err(CertificateError::NotAValidator { .. })
        ));
    }

    #[test]
    fn an_attestation_for_another_checkpoint_or_tampered_metrics_fails() {
        let a = Identity::generate();
        let set = vec![a.peer_id().to_string()];
        let mut h = certified(&[&a]);
        h.checkpoint = BlobId::of(b"other weights");
        assert!(matches!(h.verify_certificate(&set, 1), Err(CertificateError::Mismatch { field: "checkpoint", .. })));
        let mut h = certified(&[&a]);
        h.certificate[0].body.metrics.val_accuracy = 0.99;
        assert!(matches!(h.verify_certificate(&set, 1), Err(CertificateError::BadSignature { .. })));
    }

    #[test]
    fn the_head_id_covers_the_certificate() {
        let a = Identity::generate();
        let h = certified(&[&a]);
        let mut stripped = h.clone();
        stripped.certificate.clear();
        assert_ne!(h.id(), stripped.id());
    }
}
