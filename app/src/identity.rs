//! The tab's network identity: a 32-byte ed25519 secret that survives reloads, kept in
//! `localStorage` as hex so the same browser keeps the same peer id (and its history on the
//! dashboard) across visits.

/// Where the secret lives.
const STORAGE_KEY: &str = "bonfire.secret";

/// The tab's secret key and whether it will survive a reload.
#[derive(Clone, Debug, PartialEq)]
pub struct TabKey {
    pub secret: Vec<u8>,
    /// False when `localStorage` is unavailable (private mode, blocked storage): the key then
    /// lives only as long as the page.
    pub persisted: bool,
}

/// Loads the stored secret, or creates and stores a fresh one with `crypto.getRandomValues`.
pub fn tab_key() -> Result<TabKey, String> {
    let window = web_sys::window().ok_or("no window: cannot create an identity")?;
    let storage = window.local_storage().ok().flatten();

    if let Some(stored) = storage.as_ref().and_then(|s| s.get_item(STORAGE_KEY).ok().flatten()) {
        if let Some(secret) = decode(&stored) {
            return Ok(TabKey { secret, persisted: true });
        }
        // A corrupt value is replaced below rather than trusted.
    }

    let crypto = window.crypto().map_err(|_| "crypto.getRandomValues is unavailable: cannot create an identity")?;
    let mut secret = vec![0u8; 32];
    crypto
        .get_random_values_with_u8_array(&mut secret)
        .map_err(|e| format!("crypto.getRandomValues failed: {e:?}"))?;

    let persisted = storage.is_some_and(|s| s.set_item(STORAGE_KEY, &hex::encode(&secret)).is_ok());
    Ok(TabKey { secret, persisted })
}

/// Accepts exactly 64 hex characters.
fn decode(stored: &str) -> Option<Vec<u8>> {
    let bytes = hex::decode(stored.trim()).ok()?;
    (bytes.len() == 32).then_some(bytes)
}
