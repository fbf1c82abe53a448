//! Content ids: every immutable object is named by the BLAKE3 hash of its bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a content id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not a content id: expected 64 hex characters")]
pub struct ParseIdError {
    input: String,
}

macro_rules! content_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id of `bytes`: their BLAKE3 hash.
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            /// Full lowercase hex form.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex characters, for logs and the dashboard.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out)
                    .map_err(|_| ParseIdError { input: s.chars().take(80).collect() })?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    Ok(Self(<[u8; 32]>::deserialize(d)?))
                }
            }
        }
    };
}

content_id!(
    /// The BLAKE3 hash of an immutable blob (checkpoint, delta, shard, manifest).
    BlobId
);
content_id!(
    /// The id of a head: the hash of its canonical encoding.
    HeadId
);
content_id!(
    /// The id of a lease: the hash of the canonical encoding of its unsigned body.
    LeaseId
);
content_id!(
    /// The id of an update: the hash of the canonical encoding of its unsigned body.
    UpdateId
);

/// The canonical bytes of a value: deterministic postcard, the form that is hashed and signed.
pub fn canonical_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard serialisation of our own plain types cannot fail (no maps with non-string
    // keys, no unsupported serde features), so a failure here is a programming error.
    postcard::to_allocvec(value).expect("protocol types always encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex_and_json() {
        let id = BlobId::of(b"bonfire");
        let parsed: BlobId = id.to_hex().parse().unwrap();
        assert_eq!(id, parsed);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
    }

    #[test]
    fn malformed_ids_are_rejected_with_the_input_named() {
        let err = "xyz".parse::<BlobId>().unwrap_err();
        assert!(err.to_string().contains("xyz"));
        assert!("ab".repeat(31).parse::<BlobId>().is_err());
    }

    #[test]
    fn binary_encoding_is_the_raw_hash() {
        let id = BlobId::of(b"x");
        assert_eq!(postcard::from_bytes::<BlobId>(&canonical_bytes(&id)).unwrap(), id);
    }
}
