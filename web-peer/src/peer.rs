//! The worker as a libp2p peer: a swarm (gossipsub, request-response, identify, ping) over a
//! WebSocket connection to the seed, whose address `GET /api/network` hands out.
//!
//! One task owns the swarm ([`drive`]); the contribution loop holds a [`Peer`], which sends it
//! commands and reads what it learned: the newest head heard by gossip, the connection state and
//! the transport of each connected peer, straight from the swarm's connection events. The task
//! answers the seed's requests for this tab's own delta blobs (a native peer fetches an announced
//! update's delta from its author over the same connection). When the connection closes the task
//! ends; the contribution loop dials again with backoff.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};
use gloo_timers::future::TimeoutFuture;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, ping, websocket_websys, yamux, Multiaddr, PeerId, StreamProtocol, Swarm, Transport};
use protocol::head::Head;
use protocol::worker::LinkPeer;
use protocol::wire::{self, Announcement, Request, Response};
use protocol::{BlobId, Identity};

/// How long a dial may take before the tab falls back to HTTP.
const DIAL_TIMEOUT_MS: u32 = 10_000;

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    rpc: request_response::cbor::Behaviour<Request, Response>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

enum Command {
    Request { request: Request, reply: oneshot::Sender<Result<Response, String>> },
    Publish { topic: String, data: Vec<u8>, reply: oneshot::Sender<Result<(), String>> },
    /// Keep `bytes` to answer requests for `id` (this tab's delta).
    Serve { id: BlobId, bytes: Vec<u8> },
}

/// A head heard by gossip and when (ms since the epoch, this tab's clock).
#[derive(Clone)]
pub struct HeardHead {
    pub head: Head,
    pub at_ms: f64,
}

/// What the swarm task shares with the contribution loop.
#[derive(Default)]
struct Shared {
    /// Newest head heard on the heads topic (only rounds above the last one are kept).
    head: Option<HeardHead>,
    /// Connected peers by id: transport and role (from identify).
    peers: BTreeMap<PeerId, LinkPeer>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
    /// Bumped on every change the page should see.
    version: u64,
}

/// The contribution loop's handle on the swarm task.
pub struct Peer {
    commands: mpsc::UnboundedSender<Command>,
    shared: Rc<RefCell<Shared>>,
    /// The connection's transport name.
    pub transport: &'static str,
    /// How long the dial took, until the connection was authenticated and multiplexed.
    pub connect_ms: f64,
    /// Why the addresses tried before this one failed (e.g. WebRTC-direct blocked), if any were.
    pub passed_over: Option<String>,
}

/// The transport a browser connection runs over.
fn transport_of(addr: &Multiaddr) -> &'static str {
    if addr.iter().any(|p| matches!(p, Protocol::WebRTCDirect)) {
        "webrtc-direct"
    } else if addr.iter().any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_))) {
        "websocket"
    } else {
        "other"
    }
}

/// Builds the swarm for `identity`, dials the first address of `addrs` that connects, subscribes
/// to the experiment's heads topic and spawns the swarm task.
pub async fn connect(identity: &Identity, addrs: &[String], experiment: &str) -> Result<Peer, String> {
    let mut failures = Vec::new();
    for text in addrs {
        let addr: Multiaddr = match text.parse() {
            Ok(addr) => addr,
            Err(e) => {
                failures.push(format!("{text}: not a multiaddr ({e})"));
                continue;
            }
        };
        match dial(identity, addr.clone(), experiment).await {
            Ok(mut peer) => {
                peer.passed_over = (!failures.is_empty()).then(|| failures.join("; "));
                return Ok(peer);
            }
            Err(e) => failures.push(format!("{}: {e}", transport_of(&addr))),
        }
    }
    if failures.is_empty() {
        return Err("the edge offers no address this tab may dial (GET /api/network lists no browser_addrs, or ?transport= rules them out)".into());
    }
    Err(failures.join("; "))
}

/// A WebSocket connection whose flush completes at once. `websocket-websys` finishes a flush
/// only when a 100 ms timer sees the socket's `bufferedAmount` at zero, so every yamux flush
/// (a request, a window update) stalled for up to 100 ms: a 0.4 MB checkpoint took 180–330 ms
/// on loopback. Data handed to `WebSocket.send` is on its way regardless, and writes still
/// apply back-pressure (the transport refuses more than 1 MiB buffered), so nothing is lost
/// by not waiting.
struct FlushAtOnce(websocket_websys::Connection);

impl futures::AsyncRead for FlushAtOnce {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl futures::AsyncWrite for FlushAtOnce {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

fn build_swarm(identity: &Identity) -> Result<Swarm<Behaviour>, String> {
    let agent = format!("bonfire/{} browser", env!("CARGO_PKG_VERSION"));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity.keypair().clone())
        .with_wasm_bindgen()
        .with_other_transport(|key| {
            let websocket = websocket_websys::Transport::default()
                .map(|connection, _| FlushAtOnce(connection))
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default());
            // WebRTC brings its own encryption (DTLS, then noise on channel 0) and multiplexing
            // (a data channel per stream).
            let webrtc = crate::webrtc::Transport::new(key.clone());
            Ok(webrtc
                .or_transport(websocket)
                .map(|either, _| match either {
                    futures::future::Either::Left((peer, connection)) => (peer, StreamMuxerBox::new(connection)),
                    futures::future::Either::Right((peer, muxer)) => (peer, StreamMuxerBox::new(muxer)),
                })
                .boxed())
        })
        .map_err(|e| format!("building the browser transports: {e}"))?
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(wire::GOSSIP_HEARTBEAT_MS))
                .max_transmit_size(wire::MAX_GOSSIP_BYTES)
                .build()
                .map_err(|e| format!("gossipsub config: {e}"))?;
            let gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
                .map_err(|e| format!("gossipsub: {e}"))?;
            let codec = request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(wire::MAX_REQUEST_BYTES)
                .set_response_size_maximum(wire::MAX_RESPONSE_BYTES);
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
        .map_err(|e| format!("building the libp2p behaviour: {e:?}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    Ok(swarm)
}

async fn dial(identity: &Identity, addr: Multiaddr, experiment: &str) -> Result<Peer, String> {
    let seed = addr
        .iter()
        .find_map(|p| match p {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .ok_or_else(|| format!("{addr} does not end in /p2p/<peer id>"))?;
    let mut swarm = build_swarm(identity)?;
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&IdentTopic::new(wire::heads_topic(experiment)))
        .map_err(|e| format!("subscribing to the heads topic: {e}"))?;
    let started = js_sys::Date::now();
    swarm.dial(addr.clone()).map_err(|e| format!("cannot dial: {e}"))?;
    // Drive the swarm until the connection is up (or fails, or takes too long).
    let mut timeout = TimeoutFuture::new(DIAL_TIMEOUT_MS).fuse();
    let transport = loop {
        futures::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } if peer_id == seed => {
                    break transport_of(endpoint.get_remote_address());
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => return Err(format!("dial failed: {error}")),
                _ => {}
            },
            _ = timeout => return Err(format!("no connection within {} s", DIAL_TIMEOUT_MS / 1000)),
        }
    };
    let connect_ms = js_sys::Date::now() - started;
    let shared = Rc::new(RefCell::new(Shared::default()));
    shared.borrow_mut().peers.insert(seed, LinkPeer { peer_id: seed.to_string(), transport: transport.into(), role: "seed".into() });
    let (commands, command_rx) = mpsc::unbounded();
    wasm_bindgen_futures::spawn_local(drive(swarm, command_rx, shared.clone(), seed));
    Ok(Peer { commands, shared, transport, connect_ms, passed_over: None })
}

impl Peer {
    /// Asks the seed; an `Error` answer becomes an error here.
    pub async fn request(&self, request: Request) -> Result<Response, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .unbounded_send(Command::Request { request, reply })
            .map_err(|_| "the peer connection has closed".to_string())?;
        match answer.await.map_err(|_| "the peer connection has closed".to_string())?? {
            Response::Error(message) => Err(format!("the seed refused: {message}")),
            other => Ok(other),
        }
    }

    /// Fetches a blob from the seed by id and checks its hash.
    pub async fn blob(&self, request: Request, expect: Option<BlobId>) -> Result<Vec<u8>, String> {
        match self.request(request).await? {
            Response::Blob(bytes) => match expect {
                Some(id) if BlobId::of(&bytes) != id => Err(format!("blob {} failed its hash check", id.short())),
                _ => Ok(bytes),
            },
            other => Err(format!("asked for a blob, got {other:?}")),
        }
    }

    /// Serves `bytes` (an update's delta) to peers that ask for it, then announces `update`.
    pub async fn announce(&self, topic: String, announcement: &Announcement, delta: Vec<u8>) -> Result<(), String> {
        if let Announcement::Update(update) = announcement {
            let _ = self.commands.unbounded_send(Command::Serve { id: update.body.delta, bytes: delta });
        }
        let data = postcard::to_allocvec(announcement).map_err(|e| format!("encoding the announcement: {e}"))?;
        let (reply, answer) = oneshot::channel();
        self.commands
            .unbounded_send(Command::Publish { topic, data, reply })
            .map_err(|_| "the peer connection has closed".to_string())?;
        answer.await.map_err(|_| "the peer connection has closed".to_string())?
    }

    /// The newest head heard by gossip whose round is above `after`.
    pub fn heard_head(&self, after: Option<u64>) -> Option<HeardHead> {
        let shared = self.shared.borrow();
        shared.head.clone().filter(|h| after.is_none_or(|r| h.head.round > r))
    }

    /// Why the connection closed, if it has.
    pub fn closed(&self) -> Option<String> {
        self.shared.borrow().closed.clone()
    }

    /// Connected peers with their transports, and a counter that changes when they do.
    pub fn peers(&self) -> (u64, Vec<LinkPeer>) {
        let shared = self.shared.borrow();
        (shared.version, shared.peers.values().cloned().collect())
    }
}

/// The swarm task: runs commands, records gossip and connection changes, answers blob
/// requests, and ends when the connection to the seed closes or the [`Peer`] is dropped.
async fn drive(mut swarm: Swarm<Behaviour>, mut commands: mpsc::UnboundedReceiver<Command>, shared: Rc<RefCell<Shared>>, seed: PeerId) {
    let mut pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, String>>> = HashMap::new();
    // This tab's deltas, newest few (a round holds one per tab).
    let mut served: Vec<(BlobId, Vec<u8>)> = Vec::new();
    let close = |shared: &Rc<RefCell<Shared>>, why: String| {
        let mut s = shared.borrow_mut();
        s.closed = Some(why);
        s.peers.clear();
        s.version += 1;
    };
    loop {
        futures::select! {
            command = commands.next() => match command {
                None => return, // the contribution loop let go of this connection
                Some(Command::Request { request, reply }) => {
                    let id = swarm.behaviour_mut().rpc.send_request(&seed, request);
                    pending.insert(id, reply);
                }
                Some(Command::Publish { topic, data, reply }) => {
                    let result = swarm.behaviour_mut().gossipsub.publish(IdentTopic::new(topic.clone()), data);
                    let _ = reply.send(result.map(|_| ()).map_err(|e| format!("publishing on {topic}: {e}")));
                }
                Some(Command::Serve { id, bytes }) => {
                    served.retain(|(known, _)| *known != id);
                    served.push((id, bytes));
                    if served.len() > 4 {
                        served.remove(0);
                    }
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    let mut s = shared.borrow_mut();
                    let role = if peer_id == seed { "seed" } else { "peer" };
                    let transport = transport_of(endpoint.get_remote_address());
                    s.peers.entry(peer_id).or_insert(LinkPeer { peer_id: peer_id.to_string(), transport: transport.into(), role: role.into() });
                    s.version += 1;
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. } => {
                    if peer_id == seed {
                        let why = cause.map(|c| c.to_string()).unwrap_or_else(|| "closed".into());
                        for (_, reply) in pending.drain() {
                            let _ = reply.send(Err(format!("the connection to the seed closed: {why}")));
                        }
                        close(&shared, format!("the connection to the seed closed: {why}"));
                        return;
                    }
                    let mut s = shared.borrow_mut();
                    s.peers.remove(&peer_id);
                    s.version += 1;
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    let mut s = shared.borrow_mut();
                    if let Some(peer) = s.peers.get_mut(&peer_id) {
                        if let Some(role) = info.agent_version.split(' ').nth(1) {
                            peer.role = role.to_string();
                        }
                    }
                    s.version += 1;
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                    if let Ok(Announcement::Head(head)) = postcard::from_bytes::<Announcement>(&message.data) {
                        let mut s = shared.borrow_mut();
                        if s.head.as_ref().is_none_or(|known| head.round > known.head.round) {
                            s.head = Some(HeardHead { head: *head, at_ms: js_sys::Date::now() });
                        }
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => match event {
                    request_response::Event::Message { message: request_response::Message::Request { request, channel, .. }, .. } => {
                        let response = match request {
                            Request::Blob(id) => match served.iter().find(|(known, _)| *known == id) {
                                Some((_, bytes)) => Response::Blob(bytes.clone()),
                                None => Response::Error(format!("this tab does not have blob {id}")),
                            },
                            _ => Response::Error("a browser peer only serves its own update deltas".into()),
                        };
                        let _ = swarm.behaviour_mut().rpc.send_response(channel, response);
                    }
                    request_response::Event::Message { message: request_response::Message::Response { request_id, response }, .. } => {
                        if let Some(reply) = pending.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(reply) = pending.remove(&request_id) {
                            let _ = reply.send(Err(format!("request to the seed failed: {error}")));
                        }
                    }
                    _ => {}
                },
                _ => {}
            },
        }
    }
}
