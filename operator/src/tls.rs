//! Webhook TLS when cert-manager is not used: the operator generates a CA
//! and a serving certificate, keeps them in a Secret (so every replica
//! serves the same one), puts the CA into the webhook's caBundle and
//! rotates both when a third of the validity remains. During a rotation
//! the caBundle holds the new and the previous CA, so the API server trusts
//! replicas that still serve the old certificate: no failed admissions.
//! Generation and the decisions are pure; the Secret/webhook I/O is in
//! `main.rs`.

use std::collections::BTreeMap;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("secret is missing {0}")]
    Missing(&'static str),
    #[error("secret field {0} is not valid: {1}")]
    Invalid(&'static str, String),
    #[error("loading certificate into rustls: {0}")]
    Rustls(String),
}

/// What the Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub ca_pem: String,
    /// The CA before the last rotation, still trusted for one period.
    pub previous_ca_pem: Option<String>,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: OffsetDateTime,
}

/// DNS names the API server may use for the webhook Service.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A fresh CA and a serving certificate for the webhook Service, valid
/// `validity_days` from `now`. `previous` is the CA being replaced.
pub fn generate(
    service: &str,
    namespace: &str,
    now: OffsetDateTime,
    validity_days: u32,
    previous: Option<&TlsMaterial>,
) -> Result<TlsMaterial, TlsError> {
    let not_after = now + Duration::days(i64::from(validity_days.max(1)));
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "podwarden webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::minutes(5);
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(service_names(service, namespace))?;
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{service}.{namespace}.svc"));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - Duration::minutes(5);
    leaf.not_after = not_after;
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        previous_ca_pem: previous.map(|p| p.ca_pem.clone()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// Rotate when less than a third of the validity remains (or already expired).
pub fn needs_rotation(m: &TlsMaterial, now: OffsetDateTime, validity_days: u32) -> bool {
    let third = Duration::days(i64::from(validity_days.max(3)) / 3);
    m.not_after - now < third
}

/// The caBundle: current CA, plus the previous one during a rotation.
pub fn ca_bundle(m: &TlsMaterial) -> String {
    let mut pem = m.ca_pem.clone();
    if let Some(p) = &m.previous_ca_pem {
        pem.push_str(p);
    }
    base64::engine::general_purpose::STANDARD.encode(pem)
}

/// JSON Patch setting the caBundle of each of the configuration's webhooks.
pub fn ca_bundle_patch(m: &TlsMaterial, webhooks: usize) -> Value {
    let bundle = ca_bundle(m);
    Value::Array(
        (0..webhooks)
            .map(|i| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}))
            .collect(),
    )
}

const CA: &str = "ca.crt";
const PREV: &str = "ca-previous.crt";
const CRT: &str = "tls.crt";
const KEY: &str = "tls.key";
const NOT_AFTER: &str = "not-after";

/// Secret `data` (raw bytes; the API layer base64-encodes).
pub fn to_secret_data(m: &TlsMaterial) -> BTreeMap<String, Vec<u8>> {
    let mut d = BTreeMap::from([
        (CA.to_string(), m.ca_pem.clone().into_bytes()),
        (CRT.to_string(), m.cert_pem.clone().into_bytes()),
        (KEY.to_string(), m.key_pem.clone().into_bytes()),
        (
            NOT_AFTER.to_string(),
            m.not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
                .into_bytes(),
        ),
    ]);
    if let Some(p) = &m.previous_ca_pem {
        d.insert(PREV.to_string(), p.clone().into_bytes());
    }
    d
}

pub fn from_secret_data(d: &BTreeMap<String, Vec<u8>>) -> Result<TlsMaterial, TlsError> {
    let text = |k: &'static str| -> Result<String, TlsError> {
        let b = d.get(k).ok_or(TlsError::Missing(k))?;
        String::from_utf8(b.clone()).map_err(|e| TlsError::Invalid(k, e.to_string()))
    };
    let not_after = OffsetDateTime::parse(
        &text(NOT_AFTER)?,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| TlsError::Invalid(NOT_AFTER, e.to_string()))?;
    Ok(TlsMaterial {
        ca_pem: text(CA)?,
        previous_ca_pem: d.get(PREV).and_then(|b| String::from_utf8(b.clone()).ok()),
        cert_pem: text(CRT)?,
        key_pem: text(KEY)?,
        not_after,
    })
}

/// The certified key rustls serves.
pub fn certified_key(
    cert_pem: &str,
    key_pem: &str,
) -> Result<tokio_rustls::rustls::sign::CertifiedKey, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(CRT, e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(CRT, "no certificate in PEM".into()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| TlsError::Invalid(KEY, e.to_string()))?
        .ok_or_else(|| TlsError::Invalid(KEY, "no private key in PEM".into()))?;
    let signing = tokio_rustls::rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(tokio_rustls::rustls::sign::CertifiedKey::new(
        certs, signing,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse(
            "2026-11-23T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    }

    #[test]
    fn generated_material_round_trips_and_loads() {
        let m = generate("podwarden", "podwarden-system", now(), 90, None).unwrap();
        assert!(m.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let back = from_secret_data(&to_secret_data(&m)).unwrap();
        assert_eq!(back, m);
        certified_key(&m.cert_pem, &m.key_pem).unwrap();
        assert_eq!(m.not_after, now() + Duration::days(90));
    }

    #[test]
    fn rotation_when_a_third_remains_and_bundle_keeps_the_old_ca() {
        let m = generate("pw", "ns", now(), 90, None).unwrap();
        assert!(!needs_rotation(&m, now() + Duration::days(59), 90));
        assert!(needs_rotation(&m, now() + Duration::days(61), 90));
        assert!(needs_rotation(&m, now() + Duration::days(200), 90));
        let next = generate("pw", "ns", now() + Duration::days(61), 90, Some(&m)).unwrap();
        let bundle = base64::engine::general_purpose::STANDARD
            .decode(ca_bundle(&next))
            .unwrap();
        let bundle = String::from_utf8(bundle).unwrap();
        assert!(bundle.contains(&m.ca_pem) && bundle.contains(&next.ca_pem));
        let p = ca_bundle_patch(&next, 2);
        assert_eq!(p[1]["path"], "/webhooks/1/clientConfig/caBundle");
    }

    #[test]
    fn serving_cert_is_signed_by_the_ca_for_the_service_names() {
        use tokio_rustls::rustls::client::danger::ServerCertVerifier;
        use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let m = generate("podwarden", "podwarden-system", now(), 90, None).unwrap();
        let ca: Vec<CertificateDer> = rustls_pemfile::certs(&mut m.ca_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let leaf: Vec<CertificateDer> = rustls_pemfile::certs(&mut m.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(ca[0].clone()).unwrap();
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let verifier = tokio_rustls::rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.into(),
            provider,
        )
        .build()
        .unwrap();
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            (now() + Duration::days(1)).unix_timestamp() as u64,
        ));
        for name in [
            "podwarden.podwarden-system.svc",
            "podwarden.podwarden-system.svc.cluster.local",
        ] {
            let sn = ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&leaf[0], &[], &sn, &[], at)
                .unwrap();
        }
        let wrong = ServerName::try_from("evil.example").unwrap();
        assert!(verifier
            .verify_server_cert(&leaf[0], &[], &wrong, &[], at)
            .is_err());
    }
}
