//! Mutual TLS for mxproxy: certificates from PEM files or from memory, the two rustls
//! configurations with Istio's ALPN lists, and the SPIFFE identity in a peer certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// What the client side (outbound, Istio's cluster filter) offers: the exchange first.
pub const CLIENT_ALPN: [&[u8]; 2] = [peerx::ISTIO_PEER_EXCHANGE_ALPN, b"istio"];
/// What the server side (inbound listener) accepts, in Istio's order.
pub const SERVER_ALPN: [&[u8]; 3] = [peerx::ISTIO_PEER_EXCHANGE_ALPN, b"h2", b"http/1.1"];

/// A workload's certificate chain and key, and the roots it trusts for its peers.
#[derive(Debug)]
pub struct TlsMaterial {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Trust anchors for the peer's chain (the mesh CA).
    pub roots: Vec<CertificateDer<'static>>,
}

impl TlsMaterial {
    /// Reads PEM files: the chain, its key, and the CA bundle.
    ///
    /// # Errors
    /// A message naming the file that could not be read or held no usable item.
    pub fn from_pem_files(cert: &Path, key: &Path, ca: &Path) -> Result<Self, String> {
        let certs = |path: &Path| {
            CertificateDer::pem_file_iter(path)
                .and_then(|items| items.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|certs| {
                    if certs.is_empty() {
                        Err(format!("{}: no certificate", path.display()))
                    } else {
                        Ok(certs)
                    }
                })
        };
        Ok(Self {
            chain: certs(cert)?,
            key: PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: {e}", key.display()))?,
            roots: certs(ca)?,
        })
    }

    /// The SPIFFE identity of our own leaf certificate.
    pub fn own_principal(&self) -> Option<String> {
        self.chain.first().and_then(|leaf| spiffe_id(leaf))
    }

    fn root_store(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        for root in &self.roots {
            roots
                .add(root.clone())
                .map_err(|e| format!("CA certificate: {e}"))?;
        }
        Ok(roots)
    }

    /// The inbound side: a client certificate signed by the mesh CA is required.
    ///
    /// # Errors
    /// A message when rustls refuses the material.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.root_store()?),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("certificate or key: {e}"))?;
        config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The outbound side: the server's chain must lead to the mesh CA and name the upstream host.
    ///
    /// # Errors
    /// A message when rustls refuses the material.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.root_store()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("certificate or key: {e}"))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// ring, named explicitly so the choice never depends on which provider features the dependency
/// tree happens to enable. rustls deprecates it for lacking post-quantum key exchange; aws-lc-rs
/// has that but needs cmake and minutes of C build in CI, too much for a loopback example.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The first `spiffe://` URI among a certificate's subject alternative names: the workload
/// identity Istio reports as `*_principal`.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Option<String> {
    uri_sans(cert)
        .into_iter()
        .find(|uri| uri.starts_with("spiffe://"))
        .map(str::to_owned)
}

/// The namespace in `spiffe://<trust domain>/ns/<namespace>/sa/<account>`, which Istio prefers
/// over the namespace a peer claims in its metadata.
pub fn spiffe_namespace(id: &str) -> Option<&str> {
    let path = id.strip_prefix("spiffe://")?.split_once('/')?.1;
    let mut parts = path.split('/');
    while let Some(part) = parts.next() {
        if part == "ns" {
            return parts.next().filter(|ns| !ns.is_empty());
        }
    }
    None
}

/// The URI names (`[6] IA5String`) in the subject-alternative-name extension of a DER
/// certificate. A minimal DER walk: Certificate → tbsCertificate → `[3]` extensions → the
/// extension whose OID is 2.5.29.17 → GeneralNames. Anything malformed yields no names.
pub fn uri_sans(cert: &[u8]) -> Vec<&str> {
    const SEQUENCE: u8 = 0x30;
    const EXTENSIONS: u8 = 0xa3;
    const OID: u8 = 0x06;
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    const URI: u8 = 0x86;
    const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

    let walk = || -> Option<Vec<&str>> {
        let (_, certificate) = expect(cert, SEQUENCE)?;
        let (_, mut tbs) = expect(certificate, SEQUENCE)?;
        let mut extensions = loop {
            let (tag, content, rest) = tlv(tbs)?;
            if tag == EXTENSIONS {
                break expect(content, SEQUENCE)?.1;
            }
            tbs = rest;
        };
        while !extensions.is_empty() {
            let (rest, extension) = expect(extensions, SEQUENCE)?;
            extensions = rest;
            let (after_oid, oid) = expect(extension, OID)?;
            if oid != SUBJECT_ALT_NAME {
                continue;
            }
            let value = match tlv(after_oid)? {
                (BOOLEAN, _, rest) => rest,
                _ => after_oid,
            };
            let (_, names) = expect(value, OCTET_STRING)?;
            let (_, mut names) = expect(names, SEQUENCE)?;
            let mut uris = Vec::new();
            while !names.is_empty() {
                let (tag, name, rest) = tlv(names)?;
                if tag == URI {
                    uris.push(std::str::from_utf8(name).ok()?);
                }
                names = rest;
            }
            return Some(uris);
        }
        Some(Vec::new())
    };
    walk().unwrap_or_default()
}

/// One DER element: its tag, its content and what follows. Definite lengths of up to 4 bytes.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (digits, rest) = rest.split_at_checked(count)?;
        let len = digits
            .iter()
            .fold(0usize, |len, digit| len << 8 | usize::from(*digit));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// An element with the given tag: (what follows, its content).
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = tlv(input)?;
    (found == tag).then_some((rest, content))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::mxproxy::certs::MeshCa;

    #[test]
    fn the_spiffe_identity_is_read_from_the_certificate() {
        let ca = MeshCa::new().unwrap();
        let id = "spiffe://cluster.local/ns/echo/sa/tcp-echo";
        let cert = ca.issue(id).unwrap().cert;
        assert_eq!(uri_sans(&cert), vec![id]);
        assert_eq!(spiffe_id(&cert).as_deref(), Some(id));
        assert_eq!(spiffe_namespace(id), Some("echo"));
        // Every truncation and every single-byte corruption: an answer, never a panic, and a
        // truncated certificate never yields a name (its outer length no longer fits).
        for cut in 0..cert.len() {
            assert!(uri_sans(&cert[..cut]).is_empty(), "cut {cut}");
        }
        let mut bytes = cert.to_vec();
        for at in 0..bytes.len() {
            let original = bytes[at];
            for flip in [0x01, 0x80, 0xff] {
                bytes[at] = original ^ flip;
                let _ = uri_sans(&bytes);
            }
            bytes[at] = original;
        }
    }

    #[test]
    fn spiffe_namespaces() {
        assert_eq!(
            spiffe_namespace("spiffe://td/ns/default/sa/sleep"),
            Some("default")
        );
        assert_eq!(spiffe_namespace("spiffe://td/ns//sa/sleep"), None);
        assert_eq!(spiffe_namespace("spiffe://td/sa/sleep"), None);
        assert_eq!(spiffe_namespace("https://td/ns/default"), None);
        assert_eq!(spiffe_namespace("spiffe://td"), None);
    }
}
