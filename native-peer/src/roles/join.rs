//! Joining a network through its seed: what every non-seed role does first.

use std::time::{Duration, Instant};

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
    let (net, events) = net::spawn(identity, role, None).await?;
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
    tokio::spawn(stay_connected(net.clone(), seed, bootstrap.clone(), name.to_string()));
    Ok(Joined { net, events, seed, experiment: info })
}

/// Redials the seed whenever no connection to it is open (it restarted, or the network
/// dropped): every second at first, backing off to 10 s while it stays away. A validator
/// in particular only answers the seed, so without this it would never be asked again.
async fn stay_connected(net: Client, seed: PeerId, bootstrap: Multiaddr, name: String) {
    let mut wait = Duration::from_secs(1);
    let mut lost_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(wait).await;
        match net.is_connected(seed).await {
            Err(_) => return, // the network event loop has stopped
            Ok(true) => {
                wait = Duration::from_secs(1);
                continue;
            }
            Ok(false) => {}
        }
        let since = *lost_since.get_or_insert_with(|| {
            tracing::warn!("{name}: lost the connection to the seed; redialing {bootstrap}");
            Instant::now()
        });
        match net.dial(bootstrap.clone()).await {
            Ok(()) => {
                tracing::info!("{name}: reconnected to the seed after {:.1} s", since.elapsed().as_secs_f64());
                lost_since = None;
                wait = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::debug!("{name}: the seed is still away: {e:#}");
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}
