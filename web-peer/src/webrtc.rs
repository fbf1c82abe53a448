//! WebRTC-direct from the worker, with the page's help.
//!
//! Chromium gives a Web Worker no `RTCPeerConnection`, but a data channel the page opens can be
//! transferred to the worker. So the page owns the peer connection (`app/src/rtc_bridge.rs`:
//! certificate, offer, the server's answer we compute here, the negotiated handshake channel,
//! and every further channel, transferred as soon as it exists) and this side runs libp2p over
//! the channels: noise over channel 0 and `libp2p-webrtc-utils` framing on each stream.
//!
//! Two known failures of the stock `libp2p-webrtc-websys` against native `libp2p-webrtc` do not
//! arise: the page installs `ondatachannel` before the handshake, so streams the native side
//! opens at once are not lost; and [`Channel`] sends at most [`MAX_MESSAGE`] bytes per
//! data-channel message, well under the 8 KiB the native side takes. A channel also flushes and
//! closes only once its send queue is empty: closing with data queued loses that data.
//!
//! Messages between worker and page are plain objects with an `rtc` field (the JSON-string
//! messages of `protocol::worker` cannot carry a data channel).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncRead, AsyncWrite, FutureExt, StreamExt};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use libp2p_webrtc_utils::{noise, sdp, DropListener, Fingerprint};
use send_wrapper::SendWrapper;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// The most bytes one data-channel message carries: one SCTP chunk, so the native side never
/// reassembles one. A precaution: with 8,000-byte messages the native framing failed to decode
/// (a delta was lost) until flush and close waited for the queue, and whether 8,000 works since
/// that fix is not measured.
pub const MAX_MESSAGE: usize = 1024;
/// Writes wait while this much is queued in the channel.
const MAX_BUFFERED: f64 = 1024.0 * 1024.0;

#[wasm_bindgen]
extern "C" {
    /// An `RTCDataChannel` the page handed over.
    #[wasm_bindgen(js_name = RTCDataChannel)]
    #[derive(Clone)]
    pub type DataChannel;
    #[wasm_bindgen(method, getter, js_name = readyState)]
    fn ready_state(this: &DataChannel) -> String;
    #[wasm_bindgen(method, getter, js_name = bufferedAmount)]
    fn buffered_amount(this: &DataChannel) -> f64;
    #[wasm_bindgen(method, setter, js_name = bufferedAmountLowThreshold)]
    fn set_buffered_amount_low_threshold(this: &DataChannel, bytes: f64);
    #[wasm_bindgen(method, setter, js_name = binaryType)]
    fn set_binary_type(this: &DataChannel, kind: &str);
    #[wasm_bindgen(method, catch)]
    fn send(this: &DataChannel, data: &js_sys::Uint8Array) -> Result<(), JsValue>;
    #[wasm_bindgen(method)]
    fn close(this: &DataChannel);
    #[wasm_bindgen(method, setter)]
    fn set_onmessage(this: &DataChannel, handler: Option<&js_sys::Function>);
    #[wasm_bindgen(method, setter)]
    fn set_onopen(this: &DataChannel, handler: Option<&js_sys::Function>);
    #[wasm_bindgen(method, setter)]
    fn set_onclose(this: &DataChannel, handler: Option<&js_sys::Function>);
    #[wasm_bindgen(method, setter)]
    fn set_onbufferedamountlow(this: &DataChannel, handler: Option<&js_sys::Function>);
}

// ---- the page bridge: connections by number, and what the page sent for each ----

#[derive(Default)]
struct Slot {
    handshake: Option<oneshot::Sender<Channel>>,
    dialed: Option<oneshot::Sender<Result<String, String>>>,
    inbound: Option<mpsc::UnboundedSender<Channel>>,
    opened: HashMap<u32, oneshot::Sender<Channel>>,
    closed: Rc<Closed>,
}

#[derive(Default)]
struct Closed {
    why: RefCell<Option<String>>,
    waker: RefCell<Option<Waker>>,
}

impl Closed {
    fn close(&self, why: String) {
        self.why.borrow_mut().get_or_insert(why);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

thread_local! {
    static SLOTS: RefCell<HashMap<u32, Slot>> = RefCell::new(HashMap::new());
    static NEXT: Cell<u32> = const { Cell::new(1) };
}

fn post(fields: &[(&str, JsValue)]) {
    let message = js_sys::Object::new();
    for (key, value) in fields {
        let _ = js_sys::Reflect::set(&message, &JsValue::from_str(key), value);
    }
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let _ = scope.post_message(&message);
}

/// Whether `data` is a bridge message (an object with an `rtc` field).
pub fn is_bridge_message(data: &JsValue) -> bool {
    data.is_object() && js_sys::Reflect::get(data, &"rtc".into()).is_ok_and(|v| v.is_string())
}

/// Takes one message from the page. A channel gets its handlers here, in the task that
/// delivered it: a data-channel message that arrived before would be dispatched to nobody.
pub fn on_page_message(data: &JsValue) {
    let get = |key: &str| js_sys::Reflect::get(data, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
    let channel = || Channel::new(get("channel").unchecked_into());
    let kind = get("rtc").as_string().unwrap_or_default();
    let conn = get("conn").as_f64().unwrap_or(0.0) as u32;
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let Some(slot) = slots.get_mut(&conn) else { return };
        match kind.as_str() {
            "handshake" => {
                if let Some(tx) = slot.handshake.take() {
                    let _ = tx.send(channel());
                }
            }
            "dialed" => {
                if let Some(tx) = slot.dialed.take() {
                    let _ = tx.send(Ok(get("fingerprint").as_string().unwrap_or_default()));
                }
            }
            "failed" => {
                let why = get("error").as_string().unwrap_or_else(|| "the page could not open a WebRTC connection".into());
                if let Some(tx) = slot.dialed.take() {
                    let _ = tx.send(Err(why.clone()));
                }
                slot.closed.close(why);
            }
            "channel" => {
                if let Some(tx) = &slot.inbound {
                    let _ = tx.unbounded_send(channel());
                }
            }
            "opened" => {
                let request = get("request").as_f64().unwrap_or(0.0) as u32;
                if let Some(tx) = slot.opened.remove(&request) {
                    let _ = tx.send(channel());
                }
            }
            "state" => slot.closed.close(format!("the WebRTC connection is {}", get("state").as_string().unwrap_or_default())),
            _ => {}
        }
    });
}

/// Drops connection `conn` here and asks the page to close it (once: closing and dropping a
/// connection both end up here).
fn forget(conn: u32) {
    if SLOTS.with(|slots| slots.borrow_mut().remove(&conn)).is_some() {
        post(&[("rtc", "close".into()), ("conn", conn.into())]);
    }
}

// ---- one data channel as a byte stream ----

#[derive(Default)]
struct ChannelState {
    open: bool,
    closed: bool,
    inbox: VecDeque<u8>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

struct ChannelInner {
    dc: DataChannel,
    state: Rc<RefCell<ChannelState>>,
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        self.dc.set_onmessage(None);
        self.dc.set_onopen(None);
        self.dc.set_onclose(None);
        self.dc.set_onbufferedamountlow(None);
        self.dc.close();
    }
}

/// A data channel as `AsyncRead + AsyncWrite`; clones share the channel (the framing and its
/// drop listener each hold one).
#[derive(Clone)]
pub struct Channel(Rc<ChannelInner>);

impl Channel {
    fn new(dc: DataChannel) -> Self {
        dc.set_binary_type("arraybuffer");
        // `bufferedamountlow` then means "all sent": flush and close wait for it, since a
        // channel closed with data still queued loses that data.
        dc.set_buffered_amount_low_threshold(0.0);
        let state = Rc::new(RefCell::new(ChannelState { open: dc.ready_state() == "open", ..Default::default() }));
        let wake_all = |s: &mut ChannelState| {
            if let Some(w) = s.read_waker.take() {
                w.wake();
            }
            if let Some(w) = s.write_waker.take() {
                w.wake();
            }
        };
        let on_message = {
            let state = state.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                let data = js_sys::Reflect::get(&event, &"data".into()).unwrap_or(JsValue::UNDEFINED);
                let bytes = js_sys::Uint8Array::new(&data).to_vec();
                let mut s = state.borrow_mut();
                s.inbox.extend(bytes);
                if let Some(w) = s.read_waker.take() {
                    w.wake();
                }
            })
        };
        let on_open = {
            let state = state.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |_| {
                let mut s = state.borrow_mut();
                s.open = true;
                wake_all(&mut s);
            })
        };
        let on_close = {
            let state = state.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |_| {
                let mut s = state.borrow_mut();
                s.closed = true;
                wake_all(&mut s);
            })
        };
        let on_low = {
            let state = state.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |_| {
                if let Some(w) = state.borrow_mut().write_waker.take() {
                    w.wake();
                }
            })
        };
        dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
        Self(Rc::new(ChannelInner { dc, state, _handlers: vec![on_message, on_open, on_close, on_low] }))
    }
}

impl AsyncRead for Channel {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut s = self.0.state.borrow_mut();
        if !s.inbox.is_empty() {
            let n = buf.len().min(s.inbox.len());
            for (slot, byte) in buf.iter_mut().zip(s.inbox.drain(..n)) {
                *slot = byte;
            }
            return Poll::Ready(Ok(n));
        }
        if s.closed {
            return Poll::Ready(Ok(0));
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Channel {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut s = self.0.state.borrow_mut();
        if s.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if !s.open || self.0.dc.buffered_amount() > MAX_BUFFERED {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(MAX_MESSAGE);
        self.0
            .dc
            .send(&js_sys::Uint8Array::from(&buf[..n]))
            .map_err(|e| io::Error::other(format!("sending on a data channel: {e:?}")))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.state.borrow_mut();
        if s.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if self.0.dc.buffered_amount() > 0.0 {
            s.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.0.state.borrow().closed && self.0.dc.buffered_amount() > 0.0 {
            self.0.state.borrow_mut().write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        self.0.dc.close();
        Poll::Ready(Ok(()))
    }
}

/// A libp2p stream over one data channel.
pub struct Substream(SendWrapper<libp2p_webrtc_utils::Stream<Channel>>);

impl AsyncRead for Substream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Substream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_close(cx)
    }
}

fn substream(channel: Channel) -> (Substream, DropListener<Channel>) {
    let (stream, listener) = libp2p_webrtc_utils::Stream::new(channel);
    (Substream(SendWrapper::new(stream)), listener)
}

// ---- the connection ----

struct ConnectionInner {
    conn: u32,
    inbound: mpsc::UnboundedReceiver<Channel>,
    outbound: Option<oneshot::Receiver<Channel>>,
    drop_listeners: FuturesUnordered<DropListener<Channel>>,
    idle_waker: Option<Waker>,
    closed: Rc<Closed>,
}

/// A WebRTC connection whose peer connection lives in the page.
pub struct Connection(SendWrapper<ConnectionInner>);

impl Drop for ConnectionInner {
    fn drop(&mut self) {
        forget(self.conn);
    }
}

impl ConnectionInner {
    fn keep(&mut self, listener: DropListener<Channel>) {
        self.drop_listeners.push(listener);
        if let Some(waker) = self.idle_waker.take() {
            waker.wake();
        }
    }

    fn closed_error(&self, cx: &Context<'_>) -> Option<io::Error> {
        match self.closed.why.borrow().clone() {
            Some(why) => Some(io::Error::new(io::ErrorKind::ConnectionReset, why)),
            None => {
                *self.closed.waker.borrow_mut() = Some(cx.waker().clone());
                None
            }
        }
    }
}

impl StreamMuxer for Connection {
    type Substream = Substream;
    type Error = io::Error;

    fn poll_inbound(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Substream, io::Error>> {
        let inner = &mut *self.0;
        if let Some(e) = inner.closed_error(cx) {
            return Poll::Ready(Err(e));
        }
        match inner.inbound.poll_next_unpin(cx) {
            Poll::Ready(Some(dc)) => {
                let (stream, listener) = substream(dc);
                inner.keep(listener);
                Poll::Ready(Ok(stream))
            }
            Poll::Ready(None) => Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_outbound(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Substream, io::Error>> {
        let inner = &mut *self.0;
        if let Some(e) = inner.closed_error(cx) {
            return Poll::Ready(Err(e));
        }
        if inner.outbound.is_none() {
            let request = NEXT.with(|n| n.replace(n.get() + 1));
            let (tx, rx) = oneshot::channel();
            SLOTS.with(|slots| {
                if let Some(slot) = slots.borrow_mut().get_mut(&inner.conn) {
                    slot.opened.insert(request, tx);
                }
            });
            post(&[("rtc", "open".into()), ("conn", inner.conn.into()), ("request", request.into())]);
            inner.outbound = Some(rx);
        }
        let rx = inner.outbound.as_mut().expect("set above");
        match rx.poll_unpin(cx) {
            Poll::Ready(Ok(dc)) => {
                inner.outbound = None;
                let (stream, listener) = substream(dc);
                inner.keep(listener);
                Poll::Ready(Ok(stream))
            }
            Poll::Ready(Err(_)) => {
                inner.outbound = None;
                Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        let inner = &mut *self.0;
        inner.closed.close("closed by this side".into());
        forget(inner.conn);
        Poll::Ready(Ok(()))
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<StreamMuxerEvent, io::Error>> {
        let inner = &mut *self.0;
        if let Some(e) = inner.closed_error(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            match inner.drop_listeners.poll_next_unpin(cx) {
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) => {
                    inner.idle_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

// ---- the transport ----

/// Dials `/webrtc-direct` addresses through the page; listens on nothing.
pub struct Transport {
    keys: Keypair,
}

impl Transport {
    pub fn new(keys: Keypair) -> Self {
        Self { keys }
    }
}

impl libp2p::core::Transport for Transport {
    type Output = (PeerId, Connection);
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Pending<Result<Self::Output, io::Error>>;
    type Dial = BoxFuture<'static, Result<Self::Output, io::Error>>;

    fn listen_on(&mut self, _id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<io::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(&mut self, addr: Multiaddr, opts: DialOpts) -> Result<Self::Dial, TransportError<io::Error>> {
        if opts.role.is_listener() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let Some((socket, remote)) = libp2p_webrtc_utils::parse_webrtc_dial_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let keys = self.keys.clone();
        Ok(SendWrapper::new(dial(keys, socket, remote).boxed_local()).boxed())
    }

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Poll::Pending
    }
}

async fn dial(keys: Keypair, socket: std::net::SocketAddr, remote: Fingerprint) -> io::Result<(PeerId, Connection)> {
    let conn = NEXT.with(|n| n.replace(n.get() + 1));
    let (handshake_tx, handshake_rx) = oneshot::channel();
    let (dialed_tx, dialed_rx) = oneshot::channel();
    let (inbound_tx, inbound_rx) = mpsc::unbounded();
    let closed = Rc::new(Closed::default());
    SLOTS.with(|slots| {
        slots.borrow_mut().insert(
            conn,
            Slot {
                handshake: Some(handshake_tx),
                dialed: Some(dialed_tx),
                inbound: Some(inbound_tx),
                opened: HashMap::new(),
                closed: closed.clone(),
            },
        )
    });
    let ufrag = sdp::random_ufrag();
    let answer = sdp::answer(socket, remote, &ufrag);
    post(&[("rtc", "dial".into()), ("conn", conn.into()), ("ufrag", ufrag.into()), ("answer", answer.into())]);
    let result = async {
        let local = dialed_rx
            .await
            .map_err(|_| io::Error::other("the page dropped the WebRTC dial"))?
            .map_err(|why| io::Error::other(format!("the page could not open a WebRTC connection: {why}")))?;
        let local = parse_fingerprint(&local).ok_or_else(|| io::Error::other(format!("the page's certificate fingerprint `{local}` is not SHA-256 hex")))?;
        let handshake = handshake_rx.await.map_err(|_| io::Error::other("the page sent no handshake channel"))?;
        let (stream, listener) = substream(handshake);
        let peer = noise::outbound(keys, stream, remote, local).await.map_err(|e| io::Error::other(format!("noise over WebRTC: {e}")))?;
        Ok::<_, io::Error>((peer, listener))
    }
    .await;
    match result {
        Ok((peer, listener)) => {
            let mut inner = ConnectionInner {
                conn,
                inbound: inbound_rx,
                outbound: None,
                drop_listeners: FuturesUnordered::new(),
                idle_waker: None,
                closed,
            };
            inner.keep(listener);
            Ok((peer, Connection(SendWrapper::new(inner))))
        }
        Err(e) => {
            forget(conn);
            Err(e)
        }
    }
}

/// `AB:CD:…` (an SDP `a=fingerprint:sha-256` value) as a fingerprint.
fn parse_fingerprint(text: &str) -> Option<Fingerprint> {
    let bytes = hex::decode(text.replace(':', "")).ok()?;
    Some(Fingerprint::raw(bytes.try_into().ok()?))
}
