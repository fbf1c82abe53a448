//! The libp2p side of a native peer. One event loop ([`run`]) owns the `Swarm`; the rest of the
//! program holds a cheap [`Client`] that sends commands and awaits replies, and receives
//! [`NetEvent`]s (gossip, inbound requests) on a channel.
//!
//! Wire: gossipsub topics `bonfire/<experiment>/heads` and `bonfire/<experiment>/updates`
//! carry [`Announcement`]s; request-response `/bonfire/rpc/1` (CBOR) carries [`Request`] /
//! [`Response`] (experiment, head, lease, blob by id, head by round, attest).
//!
//! Transports: TCP and QUIC (v1) for native peers, WebRTC-direct and WebSocket for browser
//! workers; TCP and WebSocket with noise and yamux (QUIC and WebRTC bring their own encryption
//! and multiplexing). Only a peer given a WebRTC certificate (the seed) has WebRTC-direct.

mod small_writes;
pub mod webrtc;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use protocol::{wire, Identity};
use tokio::sync::{mpsc, oneshot};

pub use protocol::wire::{heads_topic, updates_topic, Announcement, AttestRequest, DirectoryEntry, Request, Response};

/// The behaviours every native peer runs.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    rpc: request_response::Behaviour<small_writes::SmallWrites>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// Something the network tells the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip announcement from `source` (the original author).
    Announcement { source: Option<PeerId>, announcement: Announcement },
    /// A peer asks something; answer with [`Client::respond`].
    Request { peer: PeerId, request: Request, channel: ResponseChannel<Response> },
    /// A connection opened or closed; `agent` is the peer's identify agent once known,
    /// `transport` what the connection runs over (`tcp` or `quic`), and `addrs` the listen
    /// addresses it reported (empty until identify, and for peers that do not listen).
    PeerChanged { peer: PeerId, connected: bool, agent: Option<String>, transport: &'static str, addrs: Vec<Multiaddr> },
}

enum Command {
    Listen { addr: Multiaddr, reply: oneshot::Sender<Result<Multiaddr>> },
    Dial { addr: Multiaddr, reply: oneshot::Sender<Result<()>> },
    Subscribe { topic: String },
    Publish { topic: String, data: Vec<u8>, reply: oneshot::Sender<Result<()>> },
    Request { peer: PeerId, request: Request, reply: oneshot::Sender<Result<Response>> },
    Respond { channel: ResponseChannel<Response>, response: Response },
    AddAddress { peer: PeerId, addr: Multiaddr },
    IsConnected { peer: PeerId, reply: oneshot::Sender<bool> },
}

/// A handle to the network event loop.
#[derive(Clone)]
pub struct Client {
    /// Unbounded, so the cycle "the loop waits to hand a role an event while the role waits to
    /// hand the loop a command" cannot form: a command never waits. (Events stay bounded, so a
    /// slow role still slows the swarm down.)
    commands: mpsc::UnboundedSender<Command>,
    /// Peers whose addresses came from a directory (see [`Client::locate`]).
    located: std::sync::Arc<std::sync::Mutex<HashSet<PeerId>>>,
}

/// Builds the swarm for `identity` and spawns its event loop. `agent` names the role in
/// identify (`bonfire/<version> <role>`), which the seed shows on its dashboard. With a
/// certificate the peer can listen on WebRTC-direct (for browsers).
pub async fn spawn(identity: &Identity, role: &str, webrtc: Option<webrtc::Certificate>) -> Result<(Client, mpsc::Receiver<NetEvent>)> {
    let agent = format!("bonfire/{} {role}", env!("CARGO_PKG_VERSION"));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity.keypair().clone())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_quic()
        .with_other_transport(|key| match webrtc {
            Some(certificate) => libp2p::core::transport::OptionalTransport::some(webrtc::transport(key, certificate)),
            None => libp2p::core::transport::OptionalTransport::none(),
        })
        .map_err(|e| anyhow!("building the WebRTC transport: {e:?}"))?
        // The builder puts WebSocket after DNS; loopback and IP addresses never resolve.
        .with_dns()?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await?
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(wire::GOSSIP_HEARTBEAT_MS))
                .max_transmit_size(wire::MAX_GOSSIP_BYTES)
                .build()
                .map_err(|e| anyhow!("gossipsub config: {e}"))?;
            let gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
                .map_err(|e| anyhow!("gossipsub: {e}"))?;
            let codec = small_writes::SmallWrites(
                request_response::cbor::codec::Codec::default()
                    .set_request_size_maximum(wire::MAX_REQUEST_BYTES)
                    .set_response_size_maximum(wire::MAX_RESPONSE_BYTES),
            );
            let rpc = request_response::Behaviour::with_codec(
                codec,
                [(StreamProtocol::new(wire::RPC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
            );
            let identify = identify::Behaviour::new(
                identify::Config::new(wire::IDENTIFY_PROTOCOL.into(), key.public()).with_agent_version(agent.clone()),
            );
            Ok(Behaviour { gossipsub, rpc, identify, ping: ping::Behaviour::default() })
        })
        .map_err(|e| anyhow!("building the libp2p behaviour: {e:?}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, event_rx) = mpsc::channel(256);
    tokio::spawn(EventLoop::new(swarm, command_rx, events).run());
    Ok((Client { commands, located: Default::default() }, event_rx))
}

impl Client {
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| anyhow!("the network event loop has stopped"))?;
        rx.await.map_err(|_| anyhow!("the network event loop dropped the request"))
    }

    /// Listens on `addr`; returns the actual address (with the bound port).
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr> {
        self.call(|reply| Command::Listen { addr, reply }).await?
    }

    /// Dials `addr` and waits for the connection.
    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Subscribes to a gossip topic.
    pub async fn subscribe(&self, topic: String) -> Result<()> {
        self.commands.send(Command::Subscribe { topic }).map_err(|_| anyhow!("the network event loop has stopped"))
    }

    /// Publishes an announcement on a topic.
    pub async fn publish(&self, topic: String, announcement: &Announcement) -> Result<()> {
        let data = postcard::to_allocvec(announcement)?;
        self.call(|reply| Command::Publish { topic, data, reply }).await?
    }

    /// Sends a request and waits for the answer; an `Error` answer becomes an error here.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response> {
        match self.call(|reply| Command::Request { peer, request, reply }).await?? {
            Response::Error(message) => Err(anyhow!("{peer} refused: {message}")),
            other => {
                if let Response::Blob(bytes) = &other {
                    crate::metrics::bytes_in("libp2p", bytes.len());
                }
                Ok(other)
            }
        }
    }

    /// Whether a connection to `peer` is open now.
    pub async fn is_connected(&self, peer: PeerId) -> Result<bool> {
        self.call(|reply| Command::IsConnected { peer, reply }).await
    }

    /// Makes `peer` dialable: unless we asked before, fetches `seed`'s peer directory and
    /// learns the listen addresses of every peer in it. Peers that do not listen (browsers)
    /// stay reachable only through the seed.
    pub async fn locate(&self, seed: PeerId, peer: PeerId) -> Result<()> {
        if peer == seed || self.located.lock().expect("lock").contains(&peer) {
            return Ok(());
        }
        self.directory(seed).await.map(|_| ())
    }

    /// `seed`'s peer directory, as (peer, role); every listed peer's addresses are learnt, so
    /// it can be asked directly.
    pub async fn directory(&self, seed: PeerId) -> Result<Vec<(PeerId, String)>> {
        let entries = match self.request(seed, Request::Peers).await? {
            Response::Peers(entries) => entries,
            other => return Err(anyhow!("asked the seed for its peer directory, got {other:?}")),
        };
        let mut peers = Vec::with_capacity(entries.len());
        for entry in entries {
            let Ok(id) = entry.peer_id.parse::<PeerId>() else { continue };
            for addr in entry.addrs.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
                let _ = self.commands.send(Command::AddAddress { peer: id, addr });
            }
            self.located.lock().expect("lock").insert(id);
            peers.push((id, entry.role));
        }
        Ok(peers)
    }

    /// Answers an inbound request.
    pub async fn respond(&self, channel: ResponseChannel<Response>, response: Response) -> Result<()> {
        if let Response::Blob(bytes) = &response {
            crate::metrics::bytes_out("libp2p", bytes.len());
        }
        self.commands.send(Command::Respond { channel, response }).map_err(|_| anyhow!("the network event loop has stopped"))
    }
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<NetEvent>,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Response>>>,
    pending_dials: HashMap<libp2p::swarm::ConnectionId, oneshot::Sender<Result<()>>>,
    pending_listens: HashMap<libp2p::core::transport::ListenerId, oneshot::Sender<Result<Multiaddr>>>,
    agents: HashMap<PeerId, String>,
    /// The listen addresses each peer reported (identify).
    listen_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// The transport of each connected peer's connection.
    transports: HashMap<PeerId, &'static str>,
    subscribed: HashSet<String>,
}

impl EventLoop {
    fn new(swarm: Swarm<Behaviour>, commands: mpsc::UnboundedReceiver<Command>, events: mpsc::Sender<NetEvent>) -> Self {
        Self {
            swarm,
            commands,
            events,
            pending_requests: HashMap::new(),
            pending_dials: HashMap::new(),
            pending_listens: HashMap::new(),
            agents: HashMap::new(),
            listen_addrs: HashMap::new(),
            transports: HashMap::new(),
            subscribed: HashSet::new(),
        }
    }

    async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    // Every client is gone: the node is shutting down.
                    None => return,
                },
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Listen { addr, reply } => match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    self.pending_listens.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(anyhow!("cannot listen on {addr}: {e}")));
                }
            },
            Command::Dial { addr, reply } => {
                let opts = libp2p::swarm::dial_opts::DialOpts::unknown_peer_id().address(addr.clone()).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(anyhow!("cannot dial {addr}: {e}")));
                    }
                }
            }
            Command::Subscribe { topic } => {
                if self.subscribed.insert(topic.clone()) {
                    if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&IdentTopic::new(topic.clone())) {
                        tracing::warn!("subscribing to {topic}: {e}");
                    }
                }
            }
            Command::Publish { topic, data, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(topic.clone()), data)
                    .map(|_| ())
                    .map_err(|e| anyhow!("publishing on {topic}: {e}"));
                let _ = reply.send(result);
            }
            Command::Request { peer, request, reply } => {
                let id = self.swarm.behaviour_mut().rpc.send_request(&peer, request);
                self.pending_requests.insert(id, reply);
            }
            Command::AddAddress { peer, addr } => {
                self.swarm.add_peer_address(peer, addr);
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(self.swarm.is_connected(&peer));
            }
            Command::Respond { channel, response } => {
                if self.swarm.behaviour_mut().rpc.send_response(channel, response).is_err() {
                    tracing::debug!("a peer went away before its answer was sent");
                }
            }
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } => {
                tracing::info!("listening on {address}/p2p/{}", self.swarm.local_peer_id());
                if let Some(reply) = self.pending_listens.remove(&listener_id) {
                    let _ = reply.send(Ok(address));
                }
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                if let Some(reply) = self.pending_listens.remove(&listener_id) {
                    let _ = reply.send(Err(anyhow!("listener closed: {reason:?}")));
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, num_established, endpoint, .. } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
                let transport = transport_of(endpoint.get_remote_address());
                self.transports.insert(peer_id, transport);
                if num_established.get() == 1 {
                    let agent = self.agents.get(&peer_id).cloned();
                    let addrs = self.listen_addrs.get(&peer_id).cloned().unwrap_or_default();
                    let _ = self.events.send(NetEvent::PeerChanged { peer: peer_id, connected: true, agent, transport, addrs }).await;
                }
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(anyhow!("dial failed: {error}")));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                let agent = self.agents.get(&peer_id).cloned();
                let transport = self.transports.remove(&peer_id).unwrap_or("tcp");
                let addrs = self.listen_addrs.remove(&peer_id).unwrap_or_default();
                let _ = self.events.send(NetEvent::PeerChanged { peer: peer_id, connected: false, agent, transport, addrs }).await;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                let known = self.agents.insert(peer_id, info.agent_version.clone());
                let addrs = info.listen_addrs.clone();
                let known_addrs = self.listen_addrs.insert(peer_id, addrs.clone());
                if known.as_deref() != Some(info.agent_version.as_str()) || known_addrs.as_ref() != Some(&addrs) {
                    let transport = self.transports.get(&peer_id).copied().unwrap_or("tcp");
                    let event = NetEvent::PeerChanged { peer: peer_id, connected: true, agent: Some(info.agent_version), transport, addrs };
                    let _ = self.events.send(event).await;
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                match postcard::from_bytes::<Announcement>(&message.data) {
                    Ok(announcement) => {
                        let _ = self.events.send(NetEvent::Announcement { source: message.source, announcement }).await;
                    }
                    Err(e) => tracing::warn!("ignoring a malformed announcement on {}: {e}", message.topic),
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event).await,
            _ => {}
        }
    }

    async fn on_rpc(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let _ = self.events.send(NetEvent::Request { peer, request, channel }).await;
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(anyhow!("request to {peer} failed: {error}")));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!("inbound request from {peer} failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// The answer to a blob request from `store`'s contents.
pub fn serve_blob(store: &crate::store::BlobStore, id: &protocol::BlobId) -> Response {
    match store.get(id) {
        Ok(Some(bytes)) => Response::Blob(bytes),
        Ok(None) => Response::Error(format!("no blob {id}")),
        Err(e) => Response::Error(format!("reading blob {id}: {e:#}")),
    }
}

/// The answer to a blob range request from `store`'s contents (ranges of at most 4 MiB).
pub fn serve_blob_range(store: &crate::store::BlobStore, id: &protocol::BlobId, offset: u64, len: u32) -> Response {
    const MAX_RANGE: u32 = 4 << 20;
    if len > MAX_RANGE {
        return Response::Error(format!("ranges are at most {MAX_RANGE} bytes, not {len}"));
    }
    match store.get_range(id, offset, len) {
        Ok(Some(bytes)) => Response::Blob(bytes),
        Ok(None) => Response::Error(format!("no blob {id}")),
        Err(e) => Response::Error(format!("{e:#}")),
    }
}

/// `quic`, `webrtc-direct`, `websocket` or `tcp`: what a connection to `addr` runs over.
fn transport_of(addr: &Multiaddr) -> &'static str {
    use libp2p::multiaddr::Protocol;
    if addr.iter().any(|p| matches!(p, Protocol::QuicV1)) {
        "quic"
    } else if addr.iter().any(|p| matches!(p, Protocol::WebRTCDirect)) {
        "webrtc-direct"
    } else if addr.iter().any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_))) {
        "websocket"
    } else {
        "tcp"
    }
}

/// A blob from the first of `sources` that has it, checked against `id`: bytes that do not
/// hash to it are rejected (counted in `bonfire_blobs_rejected_total`) and the next source is
/// asked. Returns the bytes and the peer that sent them.
pub async fn fetch_verified(net: &Client, sources: &[PeerId], id: &protocol::BlobId) -> Result<(Vec<u8>, PeerId)> {
    let mut tried: Vec<PeerId> = Vec::new();
    let mut failures = Vec::new();
    for &peer in sources {
        if tried.contains(&peer) {
            continue;
        }
        tried.push(peer);
        match net.request(peer, Request::Blob(*id)).await {
            Ok(Response::Blob(bytes)) if protocol::BlobId::of(&bytes) == *id => return Ok((bytes, peer)),
            Ok(Response::Blob(bytes)) => {
                crate::metrics::inc("bonfire_blobs_rejected_total", "Blobs from peers that failed their hash check", &[("reason", "hash")]);
                tracing::warn!("{peer} sent {} bytes that do not hash to blob {}: rejected", bytes.len(), id.short());
                failures.push(format!("{peer}: bytes that do not hash to it"));
            }
            Ok(other) => failures.push(format!("{peer}: answered {other:?}")),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    Err(anyhow!("no peer had a good copy of blob {}: {}", id.short(), failures.join("; ")))
}

/// Parses `/ip4/…/tcp/…/p2p/<peer>` into the peer id.
pub fn split_peer_addr(addr: &Multiaddr) -> Result<PeerId> {
    addr.iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .with_context(|| format!("{addr} does not end in /p2p/<peer id>"))
}

#[cfg(test)]
mod tests {
    use super::transport_of;

    #[test]
    fn names_the_transport_of_each_address() {
        let name = |addr: &str| transport_of(&addr.parse().expect("a multiaddr"));
        assert_eq!(name("/ip4/127.0.0.1/tcp/4001"), "tcp");
        assert_eq!(name("/ip4/127.0.0.1/udp/4001/quic-v1"), "quic");
        assert_eq!(name("/ip4/127.0.0.1/udp/4001/webrtc-direct"), "webrtc-direct");
        assert_eq!(name("/ip4/127.0.0.1/tcp/4002/ws"), "websocket");
        assert_eq!(name("/ip6/::1/tcp/4002/ws/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"), "websocket");
    }
}
