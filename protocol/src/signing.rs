//! Signatures: who said what. Every authoritative object travels as a [`Signed`] value whose
//! signature covers a domain tag and the canonical bytes of its body.

use libp2p_identity::{Keypair, PeerId, PublicKey};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::ids::canonical_bytes;

/// A peer's signing identity: an ed25519 libp2p keypair.
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
}

/// Why a signed object is not trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the signer's public key is malformed")]
    MalformedKey,
    #[error("signer field says {claimed} but the key belongs to {actual}")]
    SignerMismatch { claimed: String, actual: String },
    #[error("signed by {actual}, but only {expected} may sign this")]
    WrongSigner { expected: String, actual: String },
    #[error("the signature does not match the content (tampered or signed for another purpose)")]
    BadSignature,
}

impl Identity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        Self { keypair: Keypair::generate_ed25519() }
    }

    /// The identity whose ed25519 secret key is these 32 bytes (browser storage, key files).
    pub fn from_secret(secret: [u8; 32]) -> Result<Self, VerifyError> {
        let mut secret = secret;
        let keypair = Keypair::ed25519_from_bytes(&mut secret).map_err(|_| VerifyError::MalformedKey)?;
        Ok(Self { keypair })
    }

    /// The 32 secret bytes, to persist the identity.
    pub fn secret(&self) -> [u8; 32] {
        let ed = self.keypair.clone().try_into_ed25519().expect("identities are ed25519");
        let mut out = [0u8; 32];
        out.copy_from_slice(ed.secret().as_ref());
        out
    }

    /// The libp2p keypair, for the swarm.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The peer id derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    /// Sign `body` for purpose `T::DOMAIN`.
    pub fn sign<T: Signable>(&self, body: T) -> Signed<T> {
        let message = signing_message(&body);
        let signature = self.keypair.sign(&message).expect("ed25519 signing cannot fail");
        Signed {
            body,
            signer: self.peer_id().to_string(),
            public_key: self.keypair.public().encode_protobuf(),
            signature,
        }
    }
}

/// A type that can be signed; its domain tag keeps a signature for one purpose from being
/// replayed as another.
pub trait Signable: Serialize + DeserializeOwned + Clone {
    const DOMAIN: &'static str;
}

/// A body with its signer and signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "T: Signable")]
pub struct Signed<T: Signable> {
    pub body: T,
    /// The signer's peer id (base58).
    pub signer: String,
    /// The signer's public key, protobuf-encoded as libp2p does.
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

fn signing_message<T: Signable>(body: &T) -> Vec<u8> {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(b"bonfire/");
    message.extend_from_slice(T::DOMAIN.as_bytes());
    message.push(0);
    message.extend_from_slice(&canonical_bytes(body));
    message
}

impl<T: Signable> Signed<T> {
    /// Checks the signature and that the key is the named signer; returns the body.
    pub fn verify(&self) -> Result<&T, VerifyError> {
        let key = PublicKey::try_decode_protobuf(&self.public_key).map_err(|_| VerifyError::MalformedKey)?;
        let actual = key.to_peer_id().to_string();
        if actual != self.signer {
            return Err(VerifyError::SignerMismatch { claimed: self.signer.clone(), actual });
        }
        if !key.verify(&signing_message(&self.body), &self.signature) {
            return Err(VerifyError::BadSignature);
        }
        Ok(&self.body)
    }

    /// Like [`Signed::verify`], and also that the signer is `expected`.
    pub fn verify_by(&self, expected: &str) -> Result<&T, VerifyError> {
        let body = self.verify()?;
        if self.signer != expected {
            return Err(VerifyError::WrongSigner { expected: expected.to_string(), actual: self.signer.clone() });
        }
        Ok(body)
    }

    /// The signer's peer id.
    pub fn signer_peer(&self) -> Option<PeerId> {
        self.signer.parse().ok()
    }
}

/// Base64 for byte fields in JSON; raw bytes in the binary encoding.
pub mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
        } else {
            serde_bytes_vec(d)
        }
    }

    fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }
    impl Signable for Note {
        const DOMAIN: &'static str = "test-note";
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct OtherNote {
        text: String,
    }
    impl Signable for OtherNote {
        const DOMAIN: &'static str = "test-other";
    }

    #[test]
    fn a_signed_body_verifies_and_survives_json() {
        let id = Identity::generate();
        let signed = id.sign(Note { text: "hi".into() });
        assert_eq!(signed.verify().unwrap().text, "hi");
        let json = serde_json::to_string(&signed).unwrap();
        let back: Signed<Note> = serde_json::from_str(&json).unwrap();
        assert!(back.verify_by(&id.peer_id().to_string()).is_ok());
        let bin = postcard::to_allocvec(&signed).unwrap();
        assert!(postcard::from_bytes::<Signed<Note>>(&bin).unwrap().verify().is_ok());
    }

    #[test]
    fn a_tampered_field_is_rejected() {
        let id = Identity::generate();
        let mut signed = id.sign(Note { text: "pay 1".into() });
        signed.body.text = "pay 100".into();
        assert_eq!(signed.verify(), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_claimed_signer_that_does_not_own_the_key_is_rejected() {
        let alice = Identity::generate();
        let mallory = Identity::generate();
        let mut signed = mallory.sign(Note { text: "x".into() });
        signed.signer = alice.peer_id().to_string();
        assert!(matches!(signed.verify(), Err(VerifyError::SignerMismatch { .. })));
    }

    #[test]
    fn a_valid_signature_by_the_wrong_peer_is_rejected() {
        let alice = Identity::generate();
        let mallory = Identity::generate();
        let signed = mallory.sign(Note { text: "x".into() });
        assert!(matches!(
            signed.verify_by(&alice.peer_id().to_string()),
            Err(VerifyError::WrongSigner { .. })
        ));
    }

    #[test]
    fn a_signature_for_one_purpose_does_not_verify_for_another() {
        let id = Identity::generate();
        let signed = id.sign(Note { text: "x".into() });
        let replayed = Signed::<OtherNote> {
            body: OtherNote { text: "x".into() },
            signer: signed.signer.clone(),
            public_key: signed.public_key.clone(),
            signature: signed.signature.clone(),
        };
        assert_eq!(replayed.verify(), Err(VerifyError::BadSignature));
    }

    #[test]
    fn identities_round_trip_through_their_secret() {
        let id = Identity::generate();
        let back = Identity::from_secret(id.secret()).unwrap();
        assert_eq!(back.peer_id(), id.peer_id());
    }
}
