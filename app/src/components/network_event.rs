//! One line of the dashboard's event log: what happened on the network, in words. Rejections
//! carry their reason, because a contributor whose update was refused needs to know why.

use dioxus::prelude::*;
use protocol::api::NetworkEvent;

use crate::browser;
use crate::format::{percent, short_peer};

/// A `<li>` describing `event`; its class names the kind (`head-promoted`, `update-rejected`, …).
#[component]
pub fn NetworkEventItem(event: NetworkEvent) -> Element {
    let (kind, at) = match &event {
        NetworkEvent::LeaseGranted { .. } => ("lease-granted", None),
        NetworkEvent::UpdateAccepted { at, .. } => ("update-accepted", Some(*at)),
        NetworkEvent::UpdateRejected { at, .. } => ("update-rejected", Some(*at)),
        NetworkEvent::HeadPromoted { head } => ("head-promoted", Some(head.promoted_at)),
    };
    let time = at.map(browser::clock_at).unwrap_or_default();
    rsx! {
        li { class: "event {kind}", "data-kind": kind,
            span { class: "time", "{time}" }
            match event {
                NetworkEvent::LeaseGranted { lease } => rsx! {
                    span { class: "text",
                        "lease for round {lease.round} to {short_peer(&lease.holder)} ({lease.runtime.label()}): "
                        "shard {lease.shard}, {lease.count} records"
                    }
                },
                NetworkEvent::UpdateAccepted { update, holder, runtime, round, .. } => rsx! {
                    span { class: "text",
                        "round {round}: update {update.short()} from {short_peer(&holder)} ({runtime.label()}) accepted"
                    }
                },
                NetworkEvent::UpdateRejected { holder, reason, .. } => rsx! {
                    span { class: "text", "update from {short_peer(&holder)} rejected: " }
                    span { class: "reason", "{reason}" }
                },
                NetworkEvent::HeadPromoted { head } => rsx! {
                    span { class: "text",
                        "round {head.round}: head {head.id.short()} promoted, accuracy {percent(head.metrics.val_accuracy)}, "
                        "{head.contributors.len()} contributors, {head.attestations} attestations"
                    }
                },
            }
        }
    }
}
