//! A reducer in its own process: a helper, not an authority. It collects the deltas of the
//! open round as trainers announce them (fetching each from its author), and when the round's
//! coordinator sends it the closed round's inputs it screens every delta on its real tensor,
//! aggregates them onto the base head and answers with a signed proposal naming the inputs and
//! the checkpoint it computed. Validators check that proposal against their own aggregate and
//! fetch deltas from the reducer first, so it also takes load off the seed; a wrong, late or
//! missing proposal costs nothing but the reducer's standing in the metrics.
//!
//! `--misbehave` (hidden) makes a reducer fail on purpose for the fault drills: a wrong
//! aggregate, no answer, or corrupt blobs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::ValueEnum;
use libp2p::{Multiaddr, PeerId};
use protocol::api::ExperimentInfo;
use protocol::proposal::{Proposal, ReduceRequest};
use protocol::update::Update;
use protocol::{merge, BlobId, HeadId, Identity, Signed};
use tokio::sync::{mpsc, Mutex};

use super::{attest, gossiped};
use crate::metrics;
use crate::net::{self, Announcement, Client, NetEvent, Request, Response};
use crate::store::BlobStore;

/// How a reducer fails on purpose (fault drills only).
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Misbehaviour {
    /// Propose a checkpoint that is not the aggregate of the inputs.
    WrongAggregate,
    /// Never answer a reduce request (the coordinator's wait runs out).
    Silent,
    /// Serve delta blobs with a flipped byte (peers must reject them by hash).
    CorruptBlobs,
}

/// The head a reducer last aggregated onto, and its parameters.
struct Base {
    id: HeadId,
    params: Arc<Vec<f32>>,
}

/// A running reducer.
pub struct Reducer {
    identity: Identity,
    net: Client,
    seed: PeerId,
    experiment: ExperimentInfo,
    blobs: BlobStore,
    base: Mutex<Option<Base>>,
    /// Delta bytes announced for the open round, by blob id, with the head they build on.
    collected: Mutex<HashMap<BlobId, (HeadId, Vec<u8>)>>,
    misbehave: Option<Misbehaviour>,
    name: String,
}

impl Reducer {
    /// Starts a reducer with its data in `dir`, joining through `bootstrap`.
    pub async fn start(dir: &Path, name: &str, bootstrap: Multiaddr, experiment: &str, misbehave: Option<Misbehaviour>) -> Result<Arc<Self>> {
        let identity = crate::store::load_or_create_identity(dir)?;
        let blobs = BlobStore::open(&dir.join("blobs"))?;
        let super::join::Joined { net, events, seed, experiment: info } =
            super::join::join(&identity, "reducer", name, &bootstrap, experiment).await?;
        net.subscribe(net::updates_topic(experiment)).await?;
        let reducer = Arc::new(Self {
            identity,
            net,
            seed,
            experiment: info,
            blobs,
            base: Mutex::new(None),
            collected: Mutex::new(HashMap::new()),
            misbehave,
            name: name.into(),
        });
        tokio::spawn(reducer.clone().handle_network(events));
        match misbehave {
            Some(m) => tracing::warn!("{name} ({}) reduces {experiment}, misbehaving on purpose: {m:?}", reducer.identity.peer_id()),
            None => tracing::info!("{name} ({}) reduces {experiment}", reducer.identity.peer_id()),
        }
        Ok(reducer)
    }

    async fn handle_network(self: Arc<Self>, mut events: mpsc::Receiver<NetEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Request { peer, request: Request::Reduce(request), channel } => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if me.misbehave == Some(Misbehaviour::Silent) {
                            // Hold the request unanswered until the asker gives up.
                            tokio::time::sleep(Duration::from_secs(120)).await;
                            drop(channel);
                            return;
                        }
                        let response = match me.reduce(peer, &request).await {
                            Ok(proposal) => {
                                metrics::inc("bonfire_reductions_made_total", "Reduce requests answered, by outcome", &[("outcome", "proposed")]);
                                Response::Proposal(Box::new(proposal))
                            }
                            Err(e) => {
                                metrics::inc("bonfire_reductions_made_total", "Reduce requests answered, by outcome", &[("outcome", "refused")]);
                                tracing::warn!("{}: refused to reduce round {}: {e:#}", me.name, request.round);
                                Response::Error(format!("{e:#}"))
                            }
                        };
                        let _ = me.net.respond(channel, response).await;
                    });
                }
                NetEvent::Request { request: Request::Blob(id), channel, .. } => {
                    let response = self.serve(&id).await;
                    let _ = self.net.respond(channel, response).await;
                }
                NetEvent::Request { request: Request::BlobRange { blob, offset, len }, channel, .. } => {
                    let _ = self.net.respond(channel, net::serve_blob_range(&self.blobs, &blob, offset, len)).await;
                }
                NetEvent::Request { channel, .. } => {
                    let _ = self.net.respond(channel, Response::Error("reducers answer reduce and blob requests".into())).await;
                }
                NetEvent::Announcement { source, announcement: Announcement::Update(update) } => {
                    let me = self.clone();
                    tokio::spawn(async move { me.collect(source, *update).await });
                }
                NetEvent::Announcement { source, announcement: Announcement::Head(head) } => {
                    if gossiped::certified(&self.name, &self.experiment.manifest, source, &head) {
                        // Deltas of earlier rounds can no longer be merged.
                        let id = head.id();
                        self.collected.lock().await.retain(|_, (base, _)| *base == id);
                    }
                }
                NetEvent::PeerChanged { .. } => {}
            }
        }
    }

    /// Fetches an announced update's delta from its author, so it is here when the round
    /// closes. Only bytes that hash to the announced id are kept; anything else is left to the
    /// reduce request, which asks again.
    async fn collect(&self, source: Option<PeerId>, update: Signed<Update>) {
        let Ok(update_body) = update.verify_by(&update.body.holder) else { return };
        let (id, base) = (update_body.delta, update_body.base_head);
        if self.collected.lock().await.contains_key(&id) {
            return;
        }
        let mut sources: Vec<PeerId> = source.into_iter().collect();
        sources.extend(update_body.holder.parse::<PeerId>().ok());
        for &peer in &sources {
            if let Err(e) = self.net.locate(self.seed, peer).await {
                tracing::debug!("{}: could not look up {peer}: {e:#}", self.name);
            }
        }
        match net::fetch_verified(&self.net, &sources, &id).await {
            Ok((bytes, _)) => {
                let max = self.experiment.manifest.body.merge.max_updates as usize * 2;
                let mut collected = self.collected.lock().await;
                if collected.len() < max {
                    collected.insert(id, (base, bytes));
                }
            }
            Err(e) => tracing::debug!("{}: delta {} not collected: {e:#}", self.name, id.short()),
        }
    }

    /// A blob we hold: a collected delta or an aggregate we proposed.
    async fn serve(&self, id: &BlobId) -> Response {
        let collected = self.collected.lock().await.get(id).map(|(_, bytes)| bytes.clone());
        let response = match collected {
            Some(bytes) => Response::Blob(bytes),
            None => net::serve_blob(&self.blobs, id),
        };
        match (self.misbehave, response) {
            (Some(Misbehaviour::CorruptBlobs), Response::Blob(mut bytes)) if !bytes.is_empty() => {
                bytes[0] ^= 0xff;
                Response::Blob(bytes)
            }
            (_, response) => response,
        }
    }

    /// Screens and aggregates a closed round's inputs; signs the proposal.
    async fn reduce(&self, asker: PeerId, request: &ReduceRequest) -> Result<Signed<Proposal>> {
        let manifest = &self.experiment.manifest.body;
        ensure!(request.round >= 1, "round 0 is the genesis: nothing to reduce");
        let contributions = request.check_inputs(manifest, &self.experiment.dataset).map_err(anyhow::Error::msg)?;
        let base = self.base_params(asker, request.base_head, request.round - 1).await?;
        let mut delta_bytes = Vec::with_capacity(request.inputs.len());
        for input in &request.inputs {
            let id = input.update.body.delta;
            let held = self.collected.lock().await.get(&id).map(|(_, bytes)| bytes.clone());
            let bytes = match held {
                Some(bytes) => bytes,
                None => {
                    let author = input.update.body.holder.parse::<PeerId>().ok();
                    let sources: Vec<PeerId> = std::iter::once(asker).chain(author).collect();
                    let bytes = net::fetch_verified(&self.net, &sources, &id).await?.0;
                    // Kept: validators ask us for the round's deltas first.
                    self.collected.lock().await.insert(id, (request.base_head, bytes.clone()));
                    bytes
                }
            };
            delta_bytes.push(bytes);
        }
        let deltas = attest::screen_deltas(manifest, &request.inputs, &contributions, &delta_bytes).map_err(anyhow::Error::msg)?;
        let mut params = attest::aggregate(manifest, &base, &deltas)?;
        if self.misbehave == Some(Misbehaviour::WrongAggregate) {
            params[0] += 0.25;
        }
        let checkpoint = self.blobs.put(&merge::encode_f32le(&params))?;
        tracing::info!("{}: reduced round {}: {} inputs into checkpoint {}", self.name, request.round, deltas.len(), checkpoint.short());
        Ok(self.identity.sign(Proposal {
            experiment: request.experiment.clone(),
            round: request.round,
            base_head: request.base_head,
            inputs: request.inputs.clone(),
            checkpoint,
        }))
    }

    /// The parameters of head `id` (round `round`): the last base, or the certified head of
    /// that round fetched from the asker (or the seed) with its checkpoint, both checked.
    async fn base_params(&self, asker: PeerId, id: HeadId, round: u64) -> Result<Arc<Vec<f32>>> {
        let mut base = self.base.lock().await;
        if let Some(base) = base.as_ref().filter(|b| b.id == id) {
            return Ok(base.params.clone());
        }
        let experiment = &self.experiment.manifest;
        let request = Request::HeadAt { experiment: experiment.body.id.clone(), round };
        let head = match self.net.request(asker, request.clone()).await {
            Ok(Response::Head(info)) => info.head,
            _ => match self.net.request(self.seed, request).await? {
                Response::Head(info) => info.head,
                other => anyhow::bail!("asked for the head of round {round}, got {other:?}"),
            },
        };
        head.verify_for(experiment).with_context(|| format!("the head of round {round}"))?;
        ensure!(head.id() == id, "the head of round {round} is {}, not {}", head.id().short(), id.short());
        // Usually the checkpoint is our own last proposal, promoted: no need to fetch it.
        let bytes = match self.blobs.get(&head.checkpoint)? {
            Some(bytes) if BlobId::of(&bytes) == head.checkpoint => bytes,
            _ => net::fetch_verified(&self.net, &[asker, self.seed], &head.checkpoint).await?.0,
        };
        let params = Arc::new(merge::decode_f32le(&bytes, experiment.body.model.parameter_count())?);
        *base = Some(Base { id, params: params.clone() });
        Ok(params)
    }
}
