//! Leases: the right to train on one shard slice, from one head, until a deadline. Issued and
//! signed by a validator; the weight an update gets comes from its lease, never from its author.

use serde::{Deserialize, Serialize};

use crate::dataset::{DataError, DatasetManifest};
use crate::ids::{canonical_bytes, HeadId, LeaseId};
use crate::signing::{Signable, Signed};
use crate::update::Runtime;
use crate::UnixMillis;

/// A chunk-aligned run of records in one training shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardSlice {
    pub shard: u32,
    pub first_record: u32,
    pub count: u32,
}

/// A lease's body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub experiment: String,
    /// The round the lease's update is for (the round of `base_head` plus one).
    pub round: u64,
    pub base_head: HeadId,
    pub slice: ShardSlice,
    /// Peer id of the trainer that may use it.
    pub holder: String,
    pub runtime: Runtime,
    pub issued_at: UnixMillis,
    pub expires_at: UnixMillis,
    /// Peer id of the issuing validator.
    pub issuer: String,
}

impl Signable for Lease {
    const DOMAIN: &'static str = "lease";
}

impl Lease {
    /// The lease id: the hash of the body.
    pub fn id(&self) -> LeaseId {
        LeaseId::of(&canonical_bytes(self))
    }

    /// Whether the lease is still valid at `now`.
    pub fn is_live(&self, now: UnixMillis) -> bool {
        now < self.expires_at
    }
}

impl Signed<Lease> {
    /// The id of the signed lease's body.
    pub fn id(&self) -> LeaseId {
        self.body.id()
    }
}

/// How far a [`LeaseAsk`]'s time may be from the edge's clock, either way.
pub const LEASE_ASK_SKEW_MS: UnixMillis = 5 * 60 * 1000;

/// A peer's signed request for a lease: on a route that does not authenticate the peer itself
/// (the edge's HTTP API), it shows that the asker holds the key of the holder it names, so
/// nobody can take slices in another peer's name. Over libp2p the connection already proves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseAsk {
    pub experiment: String,
    pub runtime: Runtime,
    /// When it was signed (an old ask cannot be replayed for long).
    pub asked_at: UnixMillis,
}

impl Signable for LeaseAsk {
    const DOMAIN: &'static str = "lease-ask";
}

impl Signed<LeaseAsk> {
    /// Checks the ask is `holder`'s, for `experiment` and `runtime`, and signed within
    /// [`LEASE_ASK_SKEW_MS`] of `now`. The error says which.
    pub fn check(&self, experiment: &str, holder: &str, runtime: Runtime, now: UnixMillis) -> Result<(), String> {
        let ask = self.verify_by(holder).map_err(|e| format!("the lease request's proof is not signed by its holder {holder}: {e}"))?;
        if ask.experiment != experiment || ask.runtime != runtime {
            return Err(format!(
                "the lease request's proof is for experiment `{}` ({}), not `{experiment}` ({})",
                ask.experiment,
                ask.runtime.label(),
                runtime.label()
            ));
        }
        if ask.asked_at.abs_diff(now) > LEASE_ASK_SKEW_MS {
            return Err(format!(
                "the lease request's proof was signed {} s away from the edge's clock (at most {} s)",
                ask.asked_at.abs_diff(now) / 1000,
                LEASE_ASK_SKEW_MS / 1000
            ));
        }
        Ok(())
    }
}

/// Cuts the training shards into chunk-aligned slices of about `examples` records and hands
/// them out in a fixed order, so consecutive leases cover distinct data.
#[derive(Clone, Debug)]
pub struct SlicePlan {
    slices: Vec<ShardSlice>,
}

impl SlicePlan {
    /// Plans slices of `examples` records (rounded up to whole chunks) over every training shard.
    pub fn new(dataset: &DatasetManifest, examples: u32) -> Result<Self, DataError> {
        let mut slices = Vec::new();
        for (index, shard) in dataset.train.iter().enumerate() {
            let chunk = shard.chunk_records.max(1);
            let len = examples.max(1).div_ceil(chunk) * chunk;
            let mut first = 0;
            while first < shard.records {
                let count = len.min(shard.records - first);
                shard.check_slice(index as u32, first, count)?;
                slices.push(ShardSlice { shard: index as u32, first_record: first, count });
                first += count;
            }
        }
        if slices.is_empty() {
            return Err(DataError::NoSuchShard { shard: 0, shards: 0 });
        }
        Ok(Self { slices })
    }

    /// The `n`-th slice handed out (cycling over the dataset).
    pub fn slice(&self, n: u64) -> ShardSlice {
        self.slices[(n % self.slices.len() as u64) as usize]
    }

    /// How many distinct slices the plan has.
    pub fn len(&self) -> usize {
        self.slices.len()
    }

    /// Whether the plan has no slices (never, for a valid dataset).
    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }

    /// The part of the plan validator `index` of `count` issues: every `count`-th slice from
    /// the `index`-th, so no two validators ever lease the same slice. `None` when no slice
    /// falls to it (a plan with fewer slices than validators).
    pub fn share(&self, index: usize, count: usize) -> Option<SlicePlan> {
        let count = count.max(1);
        let slices: Vec<ShardSlice> = self.slices.iter().enumerate().filter(|(j, _)| j % count == index).map(|(_, s)| *s).collect();
        (!slices.is_empty()).then_some(SlicePlan { slices })
    }

    /// Whether `slice` is one of the plan's.
    pub fn contains(&self, slice: &ShardSlice) -> bool {
        self.slices.contains(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{RecordLayout, ShardInfo};

    fn dataset(shard_records: &[u32]) -> DatasetManifest {
        let shard = |n: u32| ShardInfo::describe(&vec![0u8; n as usize * 785], 785, 50);
        DatasetManifest {
            name: "t".into(),
            source: "test".into(),
            layout: RecordLayout::mnist(),
            train: shard_records.iter().map(|&n| shard(n)).collect(),
            validation: shard(100),
        }
    }

    #[test]
    fn slices_are_chunk_aligned_distinct_and_cover_every_record() {
        let ds = dataset(&[1000, 730]);
        let plan = SlicePlan::new(&ds, 120).unwrap(); // rounds up to 150
        let mut covered = vec![0u32; 2];
        let mut seen = std::collections::HashSet::new();
        for n in 0..plan.len() as u64 {
            let s = plan.slice(n);
            assert!(seen.insert(s), "slice {s:?} handed out twice");
            assert_eq!(s.first_record % 50, 0);
            ds.train[s.shard as usize].check_slice(s.shard, s.first_record, s.count).unwrap();
            covered[s.shard as usize] += s.count;
        }
        assert_eq!(covered, vec![1000, 730]);
        assert_eq!(plan.slice(plan.len() as u64), plan.slice(0), "the plan cycles");
    }

    #[test]
    fn validators_share_the_plan_without_overlap() {
        let ds = dataset(&[1000, 730]);
        let plan = SlicePlan::new(&ds, 150).unwrap(); // 7 + 5 slices
        let shares: Vec<SlicePlan> = (0..3).map(|i| plan.share(i, 3).unwrap()).collect();
        let mut seen = std::collections::HashSet::new();
        for share in &shares {
            for n in 0..share.len() as u64 {
                assert!(seen.insert(share.slice(n)), "a slice in two validators' shares");
            }
        }
        assert_eq!(seen.len(), plan.len(), "together the shares cover the plan");
        assert!(shares[1].contains(&plan.slice(4)) && !shares[0].contains(&plan.slice(4)));
        let tiny = SlicePlan::new(&dataset(&[100]), 100).unwrap();
        assert!(tiny.share(0, 2).is_some() && tiny.share(1, 2).is_none(), "one slice, two validators");
    }

    #[test]
    fn a_lease_id_changes_with_any_field() {
        let lease = Lease {
            experiment: "e".into(),
            round: 1,
            base_head: HeadId::of(b"h"),
            slice: ShardSlice { shard: 0, first_record: 0, count: 50 },
            holder: "p".into(),
            runtime: Runtime::Browser,
            issued_at: 1,
            expires_at: 2,
            issuer: "v".into(),
        };
        let mut other = lease.clone();
        other.slice.first_record = 50;
        assert_ne!(lease.id(), other.id());
        assert!(lease.is_live(1) && !lease.is_live(2));
    }

    #[test]
    fn a_lease_ask_proves_its_holder_and_is_bound_to_experiment_runtime_and_time() {
        let me = crate::Identity::generate();
        let holder = me.peer_id().to_string();
        let now = 1_000_000_000;
        let ask = me.sign(LeaseAsk { experiment: "e".into(), runtime: Runtime::Browser, asked_at: now });
        ask.check("e", &holder, Runtime::Browser, now + LEASE_ASK_SKEW_MS).unwrap();
        let stranger = crate::Identity::generate().peer_id().to_string();
        assert!(ask.check("e", &stranger, Runtime::Browser, now).unwrap_err().contains("not signed by its holder"));
        assert!(ask.check("f", &holder, Runtime::Browser, now).unwrap_err().contains("not `f`"));
        assert!(ask.check("e", &holder, Runtime::NativeBurn, now).unwrap_err().contains("not `e`"));
        assert!(ask.check("e", &holder, Runtime::Browser, now + LEASE_ASK_SKEW_MS + 1).unwrap_err().contains("clock"));
        assert!(ask.check("e", &holder, Runtime::Browser, now - LEASE_ASK_SKEW_MS - 1).unwrap_err().contains("clock"));
    }
}
