//! Joining a network through its seed: what every non-seed role does first.

use anyhow::{bail, ensure, Context, Result};
use libp2p::{Multiaddr, PeerId};
use protocol::api::ExperimentInfo;
use protocol::Identity;
use tokio::sync::mpsc;

use crate::net::{self, Client, NetEvent, Request, Response};

/// A role's connection to the network.
pub struct Joined {
    pub net: Client,
    pub events: mpsc::Receiver<NetEvent>,
    pub seed: PeerId,
    /// The experiment (signature and dataset manifest checked).
    pub experiment: ExperimentInfo,
}

/// Starts `identity`'s swarm as `role`, dials the seed at `bootstrap`, follows the
/// experiment's heads, and fetches and checks the experiment's manifests.
pub async fn join(identity: &Identity, role: &str, name: &str, bootstrap: &Multiaddr, experiment: &str) -> Result<Joined> {
    let seed = net::split_peer_addr(bootstrap)?;
    let (net, events) = net::spawn(identity, role).await?;
    net.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
    net.dial(bootstrap.clone()).await.with_context(|| format!("{name}: dialing the seed at {bootstrap}"))?;
    net.subscribe(net::heads_topic(experiment)).await?;
    let info = match net.request(seed, Request::Experiment { experiment: experiment.into() }).await? {
        Response::Experiment(info) => *info,
        other => bail!("the seed answered {other:?} when asked for experiment {experiment}"),
    };
    info.manifest.verify().context("the experiment manifest's signature is invalid")?;
    ensure!(
        info.dataset.id() == info.manifest.body.dataset,
        "the seed's dataset manifest does not match the experiment's dataset id"
    );
    Ok(Joined { net, events, seed, experiment: info })
}
