//! A node's data directory: content-addressed blobs as files, and heads, leases and settings in
//! an embedded redb database.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use protocol::head::Head;
use protocol::lease::Lease;
use protocol::{BlobId, Identity, Signed};
use redb::{Database, ReadableTable, TableDefinition};

const HEADS: TableDefinition<u64, &[u8]> = TableDefinition::new("heads");
const LEASES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("leases");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const UPDATES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("updates");

/// An update the coordinator accepted, kept until its round is promoted so a restart loses it
/// not: replayed through screening as of the time it was accepted.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StoredUpdate {
    pub round: u64,
    /// Its place in the round (1 = first accepted): the merge keeps this order.
    pub seq: u32,
    pub accepted_at: u64,
    pub update: Signed<protocol::update::Update>,
}

/// Immutable blobs named by their hash, one file each.
#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Opens (creating) `<dir>`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating blob directory {}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(id.to_hex())
    }

    /// Stores bytes under their hash; returns the id.
    pub fn put(&self, bytes: &[u8]) -> Result<BlobId> {
        let id = BlobId::of(bytes);
        let path = self.path(&id);
        if !path.exists() {
            // Write then rename, so a crash never leaves a truncated blob under a valid name.
            let tmp = self.dir.join(format!(".{}.tmp", id.to_hex()));
            std::fs::write(&tmp, bytes).with_context(|| format!("writing blob {id}"))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("storing blob {id}"))?;
        }
        Ok(id)
    }

    /// Stores bytes that must hash to `expected` (fetched from someone else).
    pub fn put_verified(&self, expected: &BlobId, bytes: &[u8]) -> Result<()> {
        let actual = BlobId::of(bytes);
        if &actual != expected {
            bail!("blob {expected} rejected: its bytes hash to {actual}");
        }
        self.put(bytes)?;
        Ok(())
    }

    /// A blob's bytes, if present.
    pub fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(id)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading blob {id}")),
        }
    }

    /// `len` bytes of a blob from `offset`, if the blob is present; an error if it is shorter.
    pub fn get_range(&self, id: &BlobId, offset: u64, len: u32) -> Result<Option<Vec<u8>>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = match std::fs::File::open(self.path(id)) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening blob {id}")),
        };
        let mut bytes = vec![0; len as usize];
        file.seek(SeekFrom::Start(offset)).with_context(|| format!("seeking in blob {id}"))?;
        file.read_exact(&mut bytes).with_context(|| format!("blob {id} has no {len} bytes at offset {offset}"))?;
        Ok(Some(bytes))
    }

    /// Whether the blob is present.
    pub fn has(&self, id: &BlobId) -> bool {
        self.path(id).exists()
    }
}

/// Heads, leases and settings of one node.
pub struct Db {
    db: Database,
}

impl Db {
    /// Opens (creating) `<path>`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).with_context(|| format!("opening database {}", path.display()))?;
        let tx = db.begin_write()?;
        {
            tx.open_table(HEADS)?;
            tx.open_table(LEASES)?;
            tx.open_table(META)?;
            tx.open_table(UPDATES)?;
        }
        tx.commit()?;
        Ok(Self { db })
    }

    /// Records a promoted head.
    pub fn put_head(&self, head: &Head) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(HEADS)?.insert(head.round, postcard::to_allocvec(head)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Every head, oldest first.
    pub fn heads(&self) -> Result<Vec<Head>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HEADS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, bytes) = row?;
            out.push(postcard::from_bytes(bytes.value()).context("a stored head is corrupt")?);
        }
        Ok(out)
    }

    /// Records a granted lease.
    pub fn put_lease(&self, lease: &Signed<Lease>) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(LEASES)?.insert(&lease.id().0, postcard::to_allocvec(lease)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Every lease granted for `round`.
    pub fn leases_for_round(&self, round: u64) -> Result<Vec<Signed<Lease>>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(LEASES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, bytes) = row?;
            let lease: Signed<Lease> = postcard::from_bytes(bytes.value()).context("a stored lease is corrupt")?;
            if lease.body.round == round {
                out.push(lease);
            }
        }
        Ok(out)
    }

    /// Records an accepted update of `round` (its delta is in the blob store).
    pub fn put_update(&self, stored: &StoredUpdate) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(UPDATES)?.insert(&stored.update.id().0, postcard::to_allocvec(stored)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// The accepted updates of `round`, in the order they were accepted (`seq`); those of earlier
    /// rounds are dropped on the way (they are merged, or can no longer be).
    pub fn take_updates_for_round(&self, round: u64) -> Result<Vec<StoredUpdate>> {
        let tx = self.db.begin_write()?;
        let mut out = Vec::new();
        {
            let mut table = tx.open_table(UPDATES)?;
            let mut stale = Vec::new();
            for row in table.iter()? {
                let (key, bytes) = row?;
                let stored: StoredUpdate = postcard::from_bytes(bytes.value()).context("a stored update is corrupt")?;
                if stored.round == round {
                    out.push(stored);
                } else if stored.round < round {
                    stale.push(*key.value());
                }
            }
            for key in stale {
                table.remove(&key)?;
            }
        }
        tx.commit()?;
        out.sort_by_key(|s| s.seq);
        Ok(out)
    }

    /// A stored setting.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Stores a setting.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(META)?.insert(key, value)?;
        tx.commit()?;
        Ok(())
    }
}

/// Loads the node identity from `<dir>/identity.key` (hex secret), creating it on first use.
pub fn load_or_create_identity(dir: &Path) -> Result<Identity> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("identity.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut secret = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut secret)
            .with_context(|| format!("{} is not a 64-hex-character ed25519 secret", path.display()))?;
        return Identity::from_secret(secret).with_context(|| format!("{} holds an invalid key", path.display()));
    }
    let identity = Identity::generate();
    std::fs::write(&path, hex::encode(identity.secret())).with_context(|| format!("writing {}", path.display()))?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_by_hash_and_foreign_bytes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let id = store.put(b"hello").unwrap();
        assert_eq!(store.get(&id).unwrap().unwrap(), b"hello");
        assert!(store.put_verified(&id, b"tampered").is_err());
        assert!(store.get(&BlobId::of(b"nope")).unwrap().is_none());
    }

    #[test]
    fn accepted_updates_come_back_in_round_order_and_older_rounds_are_dropped() {
        use protocol::update::{DeltaEncoding, Runtime, Update};
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("bonfire.redb")).unwrap();
        let who = Identity::generate();
        let update = |n: u8| {
            who.sign(Update {
                experiment: "e".into(),
                lease: protocol::LeaseId::of(&[n]),
                base_head: protocol::HeadId::of(&[0]),
                delta: BlobId::of(&[n]),
                encoding: DeltaEncoding::F32Le,
                holder: who.peer_id().to_string(),
                runtime: Runtime::NativeBurn,
                train_loss: 1.0,
                steps: 1,
            })
        };
        for (round, seq, n) in [(3, 2, 1), (3, 1, 2), (2, 1, 3), (4, 1, 4)] {
            db.put_update(&StoredUpdate { round, seq, accepted_at: 100, update: update(n) }).unwrap();
        }
        drop(db);
        let db = Db::open(&dir.path().join("bonfire.redb")).unwrap();
        let round3: Vec<BlobId> = db.take_updates_for_round(3).unwrap().iter().map(|s| s.update.body.delta).collect();
        assert_eq!(round3, [BlobId::of(&[2]), BlobId::of(&[1])], "by their place in the round");
        assert!(db.take_updates_for_round(2).unwrap().is_empty(), "round 2's update was dropped as stale");
        assert_eq!(db.take_updates_for_round(4).unwrap().len(), 1);
    }

    #[test]
    fn identities_persist() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_identity(dir.path()).unwrap();
        let b = load_or_create_identity(dir.path()).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
    }
}
