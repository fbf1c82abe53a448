//! The page's half of the worker's WebRTC-direct transport (`web-peer/src/webrtc.rs`).
//!
//! Chromium has no `RTCPeerConnection` in Web Workers, so the page makes the peer connection
//! the worker asks for and hands every data channel to the worker, in the task that created or
//! received it (a channel can be transferred only then). The worker computes the server's SDP
//! answer and the ufrag, and does noise and all the libp2p framing; the page only does what
//! needs a window: the certificate, the offer, the descriptions and the channels.
//!
//! Messages are objects with an `rtc` field (`dial`, `open`, `close` from the worker;
//! `handshake`, `dialed`, `failed`, `channel`, `opened`, `state` to it).

use wasm_bindgen::prelude::*;
use web_sys::Worker;

#[wasm_bindgen(inline_js = r#"
const connections = new Map();

export function rtcOnWorkerMessage(worker, message) {
  const { rtc, conn } = message;
  if (rtc === 'dial') {
    dial(worker, conn, message.ufrag, message.answer).catch((error) => {
      worker.postMessage({ rtc: 'failed', conn, error: String(error && error.message || error) });
      close(conn);
    });
  } else if (rtc === 'open') {
    const pc = connections.get(conn);
    if (!pc) return;
    try {
      const channel = pc.createDataChannel('');
      worker.postMessage({ rtc: 'opened', conn, request: message.request, channel }, [channel]);
    } catch (error) {
      worker.postMessage({ rtc: 'state', conn, state: 'failed: ' + error });
    }
  } else if (rtc === 'close') {
    close(conn);
  }
}

function close(conn) {
  const pc = connections.get(conn);
  connections.delete(conn);
  if (pc) pc.close();
}

async function dial(worker, conn, ufrag, answer) {
  if (typeof RTCPeerConnection !== 'function') throw new Error('this page has no RTCPeerConnection');
  const certificate = await RTCPeerConnection.generateCertificate({ name: 'ECDSA', namedCurve: 'P-256' });
  const pc = new RTCPeerConnection({ certificates: [certificate] });
  connections.set(conn, pc);
  // Before the handshake: streams the other side opens at once must not be missed.
  pc.ondatachannel = (event) => worker.postMessage({ rtc: 'channel', conn, channel: event.channel }, [event.channel]);
  pc.onconnectionstatechange = () => {
    const state = pc.connectionState;
    if (state === 'failed' || state === 'closed' || state === 'disconnected') {
      worker.postMessage({ rtc: 'state', conn, state });
    }
  };
  const handshake = pc.createDataChannel('', { negotiated: true, id: 0 });
  worker.postMessage({ rtc: 'handshake', conn, channel: handshake }, [handshake]);
  const offer = await pc.createOffer();
  const sdp = offer.sdp
    .replace(/^a=ice-ufrag:[^\r\n]*/m, 'a=ice-ufrag:' + ufrag)
    .replace(/^a=ice-pwd:[^\r\n]*/m, 'a=ice-pwd:' + ufrag);
  await pc.setLocalDescription({ type: 'offer', sdp });
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  const found = /^a=fingerprint:sha-256 (\S+)/m.exec(pc.localDescription.sdp);
  if (!found) throw new Error('the local description has no sha-256 fingerprint');
  worker.postMessage({ rtc: 'dialed', conn, fingerprint: found[1] });
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = rtcOnWorkerMessage)]
    fn rtc_on_worker_message(worker: &Worker, message: &JsValue);
}

/// Whether `data` from the worker is a bridge message (an object with an `rtc` field).
pub fn is_bridge_message(data: &JsValue) -> bool {
    data.is_object() && js_sys::Reflect::get(data, &"rtc".into()).is_ok_and(|v| v.is_string())
}

/// Carries out one bridge request from `worker`.
pub fn handle(worker: &Worker, message: &JsValue) {
    rtc_on_worker_message(worker, message);
}
