//! `/dashboard`: the network as the edge sees it. Heads (with who contributed), live leases,
//! known peers, the validator quorum, accuracy over rounds and a live event log. The snapshot is
//! refetched whenever the edge streams an event, and every few seconds regardless, so the page
//! recovers by itself from a restarted edge or a dropped stream.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use dioxus::prelude::*;
use futures::channel::mpsc::{self, UnboundedReceiver};
use futures::future::{select, Either};
use futures::StreamExt;
use gloo_timers::future::TimeoutFuture;
use protocol::api::{DashboardSnapshot, HeadSummary, NetworkEvent};

use crate::api::{self, ExperimentPicker};
use crate::browser;
use crate::components::{Axis, Banner, LineChart, NetworkEventItem, Series};
use crate::event_stream::{EventStream, StreamItem};
use crate::format::{ago, expires_in, percent, short_peer};

/// Longest wait between snapshot fetches when no event arrives.
const REFRESH_MS: u32 = 3_000;
/// Events kept in the log.
const EVENT_LINES: usize = 50;

/// The Dashboard page.
#[component]
pub fn Dashboard() -> Element {
    // The stream lives as long as the page: dropping the hook's value closes it.
    let (stream, inbox) = use_hook(|| {
        let (tx, rx) = mpsc::unbounded();
        let stream = EventStream::open(tx).map(Rc::new);
        (stream, Rc::new(RefCell::new(Some(rx))))
    });
    let mut snapshot = use_signal(|| None::<DashboardSnapshot>);
    let mut edge_error = use_signal(|| None::<String>);
    let mut stream_note = use_signal(|| stream.as_ref().err().map(|why| format!("no live events: {why}")));
    let mut live = use_signal(VecDeque::<NetworkEvent>::new);

    let wanted = browser::query_param("experiment");
    use_future(move || {
        let mut inbox: Option<UnboundedReceiver<StreamItem>> = inbox.borrow_mut().take();
        let mut picker = ExperimentPicker::new(wanted.clone());
        async move {
            loop {
                match fetch(&mut picker).await {
                    Ok(snap) => {
                        snapshot.set(Some(snap));
                        edge_error.set(None);
                    }
                    Err(why) => edge_error.set(Some(why)),
                }
                // Wait for an event (refetch at once) or the fallback period.
                let Some(rx) = inbox.as_mut() else {
                    TimeoutFuture::new(REFRESH_MS).await;
                    continue;
                };
                match select(rx.next(), TimeoutFuture::new(REFRESH_MS)).await {
                    Either::Left((Some(item), _)) => {
                        take(item, &mut live, &mut stream_note);
                        // Several events often arrive together: one refetch covers them all.
                        while let Ok(item) = rx.try_recv() {
                            take(item, &mut live, &mut stream_note);
                        }
                    }
                    Either::Left((None, _)) => inbox = None,
                    Either::Right(_) => {}
                }
            }
        }
    });

    let snap = snapshot.read();
    let events = merged_events(&live.read(), snap.as_ref().map(|s| s.recent_events.as_slice()).unwrap_or(&[]));

    rsx! {
        section { class: "panel",
            h1 { "Network dashboard" }
            Banner { message: edge_error.read().clone(), tone: "error" }
            Banner { message: stream_note.read().clone(), tone: "warn" }
            match snap.as_ref() {
                None => rsx! { p { class: "muted", "Waiting for the edge…" } },
                Some(s) => rsx! {
                    p { class: "summary",
                        "experiment "
                        strong { id: "experiment", "{s.experiment}" }
                        " · open round "
                        strong { id: "open-round", "{s.open_round}" }
                    }
                    p { id: "validators", class: "validators",
                        "validators ({s.validators.len()}): "
                        for v in s.validators.iter() {
                            span { key: "{v}", class: "validator mono", title: "{v}", "{short_peer(v)}" }
                        }
                        " · quorum "
                        strong { id: "quorum", "{s.quorum}" }
                        " of {s.validators.len()}"
                    }
                },
            }
        }

        section { class: "panel",
            h2 { "Accuracy per round" }
            AccuracyChart { heads: snap.as_ref().map(|s| s.heads.clone()).unwrap_or_default() }
        }

        if let Some(s) = snap.as_ref() {
            HeadsTable { heads: s.heads.clone() }
            LeasesTable { snapshot: s.clone() }
            PeersTable { snapshot: s.clone() }
        }

        section { class: "panel",
            h2 { "Events" }
            if events.is_empty() {
                p { class: "muted", "No events yet." }
            }
            ul { id: "events", class: "log events",
                for (i, event) in events.into_iter().enumerate() {
                    NetworkEventItem { key: "{i}", event }
                }
            }
        }
    }
}

/// One snapshot for the page's experiment.
async fn fetch(picker: &mut ExperimentPicker) -> Result<DashboardSnapshot, String> {
    let id = picker.id().await.map_err(|e| e.to_string())?;
    api::dashboard(&id).await.map_err(|e| e.to_string())
}

/// Records one stream item: events go to the live log, trouble to the stream note.
fn take(item: StreamItem, live: &mut Signal<VecDeque<NetworkEvent>>, note: &mut Signal<Option<String>>) {
    match item {
        StreamItem::Event(event) => {
            let mut log = live.write();
            log.push_front(event);
            log.truncate(EVENT_LINES);
            drop(log);
            if note.peek().is_some() {
                note.set(None);
            }
        }
        StreamItem::Garbled(why) => note.set(Some(why)),
        StreamItem::Interrupted => note.set(Some("live event stream interrupted; reconnecting…".into())),
    }
}

/// Newest first: streamed events, then the snapshot's (newest last there) that were not streamed.
fn merged_events(live: &VecDeque<NetworkEvent>, recent: &[NetworkEvent]) -> Vec<NetworkEvent> {
    let mut out: Vec<NetworkEvent> = live.iter().cloned().collect();
    for event in recent.iter().rev() {
        if out.len() >= EVENT_LINES {
            break;
        }
        if !live.contains(event) {
            out.push(event.clone());
        }
    }
    out.truncate(EVENT_LINES);
    out
}

/// Validation accuracy (left scale) and loss (right scale) of each head, by round.
#[component]
fn AccuracyChart(heads: Vec<HeadSummary>) -> Element {
    let mut by_round: Vec<&HeadSummary> = heads.iter().collect();
    by_round.sort_by_key(|h| h.round);
    let accuracy = by_round.iter().map(|h| (h.round as f64, h.metrics.val_accuracy as f64)).collect();
    let losses: Vec<(f64, f64)> = by_round.iter().map(|h| (h.round as f64, h.metrics.val_loss as f64)).collect();
    let max_loss = losses.iter().map(|p| p.1).filter(|l| l.is_finite()).fold(0.0, f64::max);
    let series = vec![
        Series { name: "validation accuracy".into(), class: "accuracy".into(), points: accuracy, range: (0.0, 1.0), axis: Axis::Percent },
        Series {
            name: "validation loss".into(),
            class: "loss".into(),
            points: losses,
            range: (0.0, if max_loss > 0.0 { max_loss * 1.1 } else { 1.0 }),
            axis: Axis::Decimal,
        },
    ];
    rsx! {
        LineChart { id: "accuracy-chart", title: "validation accuracy and loss per round", x_label: "round", series }
    }
}

/// Every head, newest first, with who contributed to it.
#[component]
fn HeadsTable(heads: Vec<HeadSummary>) -> Element {
    rsx! {
        section { class: "panel",
            h2 { "Heads" }
            div { class: "table-wrap tall",
                table { id: "heads",
                    thead {
                        tr {
                            th { "round" }
                            th { "head" }
                            th { class: "num", "val accuracy" }
                            th { class: "num", "val loss" }
                            th { "contributors" }
                            th { class: "num", "attestations" }
                        }
                    }
                    tbody {
                        for head in heads.iter() {
                            tr { key: "{head.id}", class: "head-row", "data-round": "{head.round}",
                                td { "{head.round}" }
                                td { class: "mono", title: "{head.id}", "{head.id.short()}" }
                                td { class: "num", "{percent(head.metrics.val_accuracy)}" }
                                td { class: "num", "{head.metrics.val_loss:.4}" }
                                td { class: "contributors",
                                    if head.contributors.is_empty() {
                                        span { class: "muted", "genesis" }
                                    }
                                    for (i, c) in head.contributors.iter().enumerate() {
                                        span {
                                            key: "{i}",
                                            class: "contributor",
                                            "data-peer-id": "{c.peer_id}",
                                            "data-runtime": "{c.runtime.label()}",
                                            title: "{c.peer_id} · {c.runtime.label()} · {c.examples} examples",
                                            span { class: "rt {c.runtime.label()}", "{c.runtime.label()}" }
                                            " "
                                            span { class: "mono", "{short_peer(&c.peer_id)}" }
                                        }
                                    }
                                }
                                td { class: "num", "{head.attestations}" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Leases not yet expired or returned.
#[component]
fn LeasesTable(snapshot: DashboardSnapshot) -> Element {
    rsx! {
        section { class: "panel",
            h2 { "Leases" }
            div { class: "table-wrap",
                table { id: "leases",
                    thead {
                        tr {
                            th { "holder" }
                            th { "runtime" }
                            th { "round" }
                            th { "slice" }
                            th { "expiry" }
                        }
                    }
                    tbody {
                        for lease in snapshot.leases.iter() {
                            tr { key: "{lease.id}", class: "lease-row",
                                td { class: "mono", title: "{lease.holder}", "{short_peer(&lease.holder)}" }
                                td {
                                    span { class: "rt {lease.runtime.label()}", "{lease.runtime.label()}" }
                                }
                                td { "{lease.round}" }
                                td { {slice(lease.shard, lease.first_record, lease.count)} }
                                td { {expires_in(snapshot.now, lease.expires_at)} }
                            }
                        }
                    }
                }
            }
            if snapshot.leases.is_empty() {
                p { class: "muted", "No live leases." }
            }
        }
    }
}

/// "shard S records A–B", last record inclusive.
fn slice(shard: u32, first: u32, count: u32) -> String {
    let last = first.saturating_add(count.saturating_sub(1));
    format!("shard {shard} records {first}–{last}")
}

/// Peers the edge's node knows.
#[component]
fn PeersTable(snapshot: DashboardSnapshot) -> Element {
    rsx! {
        section { class: "panel",
            h2 { "Peers" }
            div { class: "table-wrap",
                table { id: "peers",
                    thead {
                        tr {
                            th { "peer" }
                            th { "role" }
                            th { "transport" }
                            th { "last seen" }
                        }
                    }
                    tbody {
                        for peer in snapshot.peers.iter() {
                            tr { key: "{peer.peer_id}", class: "peer-row", "data-peer-id": "{peer.peer_id}", "data-transport": "{peer.transport}", "data-role": "{peer.role}",
                                td { class: "mono", title: "{peer.peer_id}", "{short_peer(&peer.peer_id)}" }
                                td { "{peer.role}" }
                                td { "{peer.transport}" }
                                td { {ago(snapshot.now, peer.last_seen)} }
                            }
                        }
                    }
                }
            }
            if snapshot.peers.is_empty() {
                p { class: "muted", "No peers known yet." }
            }
        }
    }
}
