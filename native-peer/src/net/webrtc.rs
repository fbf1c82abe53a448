//! WebRTC-direct, the transport a browser can dial without a certificate authority: the seed
//! listens on UDP with a self-signed certificate whose hash (`/certhash/…`) is part of its
//! address. The certificate is kept in the data directory, so the address stays the same
//! across restarts.
//!
//! Browsers do not use it yet: the tab's swarm runs in a Web Worker, and Chromium exposes
//! `RTCPeerConnection` only to windows (see docs/ARCHITECTURE.md, "Transports").

use std::path::Path;

use anyhow::{Context as _, Result};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::{PeerId, Transport};
pub use libp2p_webrtc::tokio::Certificate;

/// The WebRTC certificate in `dir` (`webrtc-certificate.pem`), made on first use.
pub fn load_or_create_certificate(dir: &Path) -> Result<Certificate> {
    let path = dir.join("webrtc-certificate.pem");
    match std::fs::read_to_string(&path) {
        Ok(pem) => Certificate::from_pem(&pem).with_context(|| {
            format!("{} is not a WebRTC certificate (remove it to make a new one; browsers then dial a new certhash)", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let certificate = Certificate::generate(&mut rand_08::thread_rng()).context("generating a WebRTC certificate")?;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(&path, certificate.serialize_pem()).with_context(|| format!("writing {}", path.display()))?;
            Ok(certificate)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The WebRTC-direct transport with `certificate`.
pub fn transport(keypair: &libp2p::identity::Keypair, certificate: Certificate) -> Boxed<(PeerId, StreamMuxerBox)> {
    libp2p_webrtc::tokio::Transport::new(keypair.clone(), certificate)
        .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)))
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_damaged_certificate_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("webrtc-certificate.pem"), "not a certificate").unwrap();
        let error = format!("{:#}", load_or_create_certificate(dir.path()).unwrap_err());
        assert!(error.contains("webrtc-certificate.pem is not a WebRTC certificate"), "{error}");
        assert_eq!(std::fs::read_to_string(dir.path().join("webrtc-certificate.pem")).unwrap(), "not a certificate", "left as it was");
    }

    #[tokio::test]
    async fn a_peer_dials_webrtc_direct_and_exchanges_a_large_blob_and_the_certhash_survives_a_restart() {
        use crate::net::{NetEvent, Request, Response};
        use libp2p::multiaddr::Protocol;
        let dir = tempfile::tempdir().unwrap();
        let certificate = load_or_create_certificate(dir.path()).unwrap();
        let restarted = load_or_create_certificate(dir.path()).unwrap();
        assert_eq!(certificate.fingerprint(), restarted.fingerprint(), "the same certificate after a restart");

        let seed = protocol::Identity::generate();
        let (net, mut events) = super::super::spawn(&seed, "seed", Some(certificate)).await.unwrap();
        let addr = net.listen("/ip4/127.0.0.1/udp/0/webrtc-direct".parse().unwrap()).await.unwrap();
        assert!(addr.to_string().contains("/webrtc-direct/certhash/"), "{addr}");
        let blob = (0..(1 << 20)).map(|i: u32| (i % 251) as u8).collect::<Vec<u8>>();
        let served = blob.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let NetEvent::Request { channel, .. } = event {
                    let _ = net.respond(channel, Response::Blob(served.clone())).await;
                }
            }
        });

        let other = tempfile::tempdir().unwrap();
        let peer = protocol::Identity::generate();
        let (client, _events) = super::super::spawn(&peer, "trainer", Some(load_or_create_certificate(other.path()).unwrap())).await.unwrap();
        // libp2p-webrtc dials from its listening UDP socket.
        client.listen("/ip4/127.0.0.1/udp/0/webrtc-direct".parse().unwrap()).await.unwrap();
        let limit = Duration::from_secs(30);
        tokio::time::timeout(limit, client.dial(addr.with(Protocol::P2p(seed.peer_id())))).await.unwrap().unwrap();
        let answer = tokio::time::timeout(limit, client.request(seed.peer_id(), Request::Peers)).await.unwrap().unwrap();
        assert!(matches!(answer, Response::Blob(bytes) if bytes == blob), "1 MiB over WebRTC, intact");
    }
}
