//! Display helpers shared by the pages, so every number and id looks the same everywhere.

use protocol::UnixMillis;

/// Placeholder for a value not known yet.
pub const NONE: &str = "—";

/// The last 8 characters of a peer id: the distinctive end (the start is the same multihash
/// prefix for every ed25519 peer).
pub fn short_peer(peer_id: &str) -> &str {
    let cut = peer_id.char_indices().rev().nth(7).map_or(0, |(i, _)| i);
    &peer_id[cut..]
}

/// A fraction in [0, 1] as a percentage with one decimal.
pub fn percent(fraction: f32) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// Whole seconds from `from` to `to` (negative when `to` is earlier).
pub fn seconds_between(from: UnixMillis, to: UnixMillis) -> i64 {
    (to as i64 - from as i64).div_euclid(1000)
}

/// "expires in 12 s" / "expired 3 s ago".
pub fn expires_in(now: UnixMillis, expires_at: UnixMillis) -> String {
    let s = seconds_between(now, expires_at);
    if s >= 0 {
        format!("expires in {s} s")
    } else {
        format!("expired {} s ago", -s)
    }
}

/// "4 s ago", "3 min ago", "2 h ago".
pub fn ago(now: UnixMillis, then: UnixMillis) -> String {
    let s = seconds_between(then, now).max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}
