//! Heads heard by gossip. Anyone connected can publish on an experiment's heads topic, so a
//! gossiped head is only a hint until its certificate checks out against the signed experiment;
//! every role screens it the same way before acting on it.

use libp2p::PeerId;
use protocol::experiment::ExperimentManifest;
use protocol::head::Head;
use protocol::Signed;

use crate::metrics;

/// Whether `head`, gossiped by `source`, carries a valid certificate for `experiment`. Either
/// way it is counted in `bonfire_gossiped_heads_total` (outcome, and the reason when refused);
/// a refused head is logged with its author so an operator can see who forges heads.
pub fn certified(name: &str, experiment: &Signed<ExperimentManifest>, source: Option<PeerId>, head: &Head) -> bool {
    const HELP: &str = "Heads heard by gossip, by outcome and (when refused) the certificate's fault";
    match head.verify_for(experiment) {
        Ok(()) => {
            metrics::inc("bonfire_gossiped_heads_total", HELP, &[("outcome", "certified")]);
            true
        }
        Err(e) => {
            metrics::inc("bonfire_gossiped_heads_total", HELP, &[("outcome", "refused"), ("reason", e.label())]);
            let from = source.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string());
            tracing::warn!("{name}: refused a head of round {} gossiped by {from}: {e}", head.round);
            false
        }
    }
}
