//! A throw-away mesh CA and workload certificates (rcgen), for the tests, the load driver and the
//! Prometheus demo: what istiod's CA would hand each sidecar, on one machine.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::tls::TlsMaterial;

/// A CA that signs workload certificates.
#[derive(Debug)]
pub struct MeshCa {
    cert: CertificateDer<'static>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A workload's certificate and key, as DER and PEM.
#[derive(Debug)]
pub struct WorkloadCert {
    /// The leaf, DER.
    pub cert: CertificateDer<'static>,
    /// The leaf, PEM.
    pub cert_pem: String,
    /// PKCS#8 key, DER.
    pub key_der: Vec<u8>,
    /// PKCS#8 key, PEM.
    pub key_pem: String,
}

impl MeshCa {
    /// A new CA with a fresh key.
    ///
    /// # Errors
    /// rcgen's message when key generation or signing fails.
    pub fn new() -> Result<Self, String> {
        let mut params = CertificateParams::new(Vec::new()).map_err(|e| e.to_string())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "cluster.local");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(Self {
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A workload certificate for `spiffe_id`, usable as client and server, that also names
    /// `localhost` and `127.0.0.1` so a loopback upstream address verifies.
    ///
    /// # Errors
    /// rcgen's message when the identity is not a valid URI name or signing fails.
    pub fn issue(&self, spiffe_id: &str) -> Result<WorkloadCert, String> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(|e| e.to_string())?;
        params.subject_alt_names.push(SanType::URI(
            spiffe_id
                .try_into()
                .map_err(|e: rcgen::Error| e.to_string())?,
        ));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        Ok(WorkloadCert {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The TLS material of a workload holding `cert`, trusting this CA.
    pub fn material(&self, cert: &WorkloadCert) -> TlsMaterial {
        TlsMaterial {
            chain: vec![cert.cert.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone())),
            roots: vec![self.cert.clone()],
        }
    }

    /// Writes `ca.pem`, then `NAME.pem` and `NAME.key` for each `(NAME, spiffe id)`.
    ///
    /// # Errors
    /// A message naming what could not be issued or written.
    pub fn write(&self, dir: &Path, workloads: &[(&str, &str)]) -> Result<(), String> {
        let write = |name: String, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        write("ca.pem".to_owned(), &self.pem)?;
        for (name, id) in workloads {
            let cert = self.issue(id)?;
            write(format!("{name}.pem"), &cert.cert_pem)?;
            write(format!("{name}.key"), &cert.key_pem)?;
        }
        Ok(())
    }
}
