//! HTTPS for `cairn serve --tls-cert FILE --tls-key FILE`: loading the PEM
//! certificate chain and private key into a rustls configuration (on the
//! `ring` crypto provider), and a listener whose connections are TLS
//! streams, so the one `axum::serve` loop — with its graceful shutdown —
//! serves plain HTTP and HTTPS alike.
//!
//! Handshakes run in their own tasks, each bounded in time, so a client that
//! connects and says nothing holds up no one else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A certificate or key that cannot be served with.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--{flag} {}: cannot read it: {source}", .file.display())]
    Read {
        flag: &'static str,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--tls-cert {}: no PEM certificate in it (expected `-----BEGIN CERTIFICATE-----` blocks): {reason}",
        .file.display()
    )]
    NoCertificate { file: PathBuf, reason: String },
    #[error(
        "--tls-key {}: no PEM private key in it (expected `-----BEGIN PRIVATE KEY-----`, or an RSA or EC key): {reason}",
        .file.display()
    )]
    NoKey { file: PathBuf, reason: String },
    #[error(
        "--tls-cert {} with --tls-key {}: {reason} (is the key the one the certificate was made for?)",
        .cert.display(),
        .key.display()
    )]
    Rejected { cert: PathBuf, key: PathBuf, reason: String },
}

/// The server's TLS settings from a PEM certificate chain (the server's
/// certificate first) and its PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |flag: &'static str, file: &Path| {
        std::fs::read(file).map_err(|source| TlsError::Read { flag, file: file.to_owned(), source })
    };
    let cert_pem = read("tls-cert", cert)?;
    let key_pem = read("tls-key", key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate { file: cert.to_owned(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: cert.to_owned(),
            reason: "the file is empty of them".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::NoKey { file: key.to_owned(), reason: e.to_string() })?;
    let rejected = |e: rustls::Error| TlsError::Rejected {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    };
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(rejected)?;
    // The API speaks HTTP/1.1 only (axum is built without HTTP/2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Longest a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake is done, waiting for the server loop.
const READY_BACKLOG: usize = 64;

/// A listener of TLS connections for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener`, handshaking with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        let accepting = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener { ready, local, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // The server loop is done with it: stop taking connections.
        self.accepting.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, mostly: pause rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                // A client that does not trust the certificate, or speaks
                // plain HTTP to the TLS port: its business, not the server's.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when this listener drops it.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_pem_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(e.starts_with("--tls-cert ") && e.contains("cert.pem") && e.contains("cannot read"), "{e}");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("no PEM certificate"), "{e}");
    }
}
