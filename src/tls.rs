//! Place in the data path: the trust anchors of the HTTPS connections the
//! function opens to Bedrock Runtime, DynamoDB and AppSync's GraphQL endpoint,
//! built once at init. (The cancel listener's real-time connection is
//! tokio-tungstenite's, which trusts all of Mozilla's roots through
//! `webpki-roots`, also compiled in.)
//!
//! The function trusts the roots of Amazon Trust Services, the CAs of every
//! AWS service endpoint and of ACM certificates (an AppSync custom domain
//! must use one): Amazon Root CA 1 to 4 and Starfield Services Root
//! Certificate Authority - G2 (<https://www.amazontrust.com/repository/>).
//! They are taken from Mozilla's root program as compiled into
//! `webpki-root-certs`, so init reads no files. Loading the platform's roots
//! instead (what reqwest and the AWS SDK do by default, each on its own) was
//! most of the init CPU: both parse every PEM file of the system's certificate
//! directory, 15 of 20 ms of CPU per cold start on a Debian host, and the SDK
//! parses its trust store again for every client it builds. An endpoint behind
//! any other CA (a TLS-inspecting proxy, a gateway in front of Bedrock) is
//! refused.

use std::sync::Arc;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine as _;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use thiserror::Error;

/// Why a TLS configuration could not be built (a build defect, never input).
#[derive(Debug, Error)]
pub enum TlsError {
    /// rustls refused the protocol versions of its own default provider.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The AWS SDK's TLS context refused the trust store. (Its builder does
    /// not fail today; the SDK parses the PEM document when it first
    /// connects, which the tests here check it can.)
    #[error("TLS trust store for the AWS SDK: {0}")]
    Sdk(#[from] aws_smithy_http_client::HttpClientError),
}

/// The subjects (common names) of Amazon Trust Services' roots.
const AMAZON_ROOTS: [&str; 5] = [
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
];

/// Amazon Trust Services' roots, found in Mozilla's program by the common
/// name their DER encoding carries (each is self-signed, so it names itself).
fn amazon_root_certificates() -> impl Iterator<Item = &'static CertificateDer<'static>> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter(|cert| {
            AMAZON_ROOTS
                .iter()
                .any(|name| contains(cert.as_ref(), name.as_bytes()))
        })
}

/// Whether `needle` occurs in `haystack` (memchr's SIMD search: a plain scan
/// of Mozilla's 150 roots cost 2 ms of init).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// The rustls client configuration of the AppSync connections: Amazon's
/// roots, TLS 1.2 and 1.3 with the aws-lc-rs provider (the SDK's default), and
/// ALPN offering HTTP/2 then HTTP/1.1 as reqwest does by default.
///
/// # Errors
/// [`TlsError::Rustls`] when the provider rejects the default versions.
pub(crate) fn appsync_client_config() -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(amazon_root_certificates().cloned());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The HTTP client of every AWS SDK client (Bedrock Runtime, DynamoDB and the
/// credential providers' STS): the SDK's own hyper client with aws-lc-rs,
/// trusting only Amazon's roots.
///
/// # Errors
/// [`TlsError::Sdk`] when the SDK rejects the trust store.
pub(crate) fn sdk_http_client() -> Result<SharedHttpClient, TlsError> {
    let trust_store = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(root_certificates_pem());
    let context = TlsContext::builder()
        .with_trust_store(trust_store)
        .build()?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

/// Amazon's root certificates as one PEM document (RFC 7468: base64 lines of
/// 64 characters between `CERTIFICATE` labels), the form the SDK's trust
/// store takes.
fn root_certificates_pem() -> Vec<u8> {
    let mut pem = String::new();
    for cert in amazon_root_certificates() {
        let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            // base64 output is ASCII, so every 64-byte slice is whole characters.
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn each_amazon_root_is_found_once() {
        let found: Vec<_> = amazon_root_certificates().collect();
        assert_eq!(found.len(), AMAZON_ROOTS.len());
        for name in AMAZON_ROOTS {
            let named = found
                .iter()
                .filter(|cert| contains(cert.as_ref(), name.as_bytes()))
                .count();
            assert_eq!(named, 1, "{name}");
        }
    }

    #[test]
    fn the_pem_document_holds_the_amazon_roots_unchanged() {
        let pem = root_certificates_pem();
        let parsed: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .expect("our own PEM parses");
        let expected: Vec<_> = amazon_root_certificates().cloned().collect();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn the_appsync_config_trusts_every_amazon_root_and_offers_both_protocols() {
        let config = appsync_client_config().expect("default versions");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(amazon_root_certificates().cloned());
        assert_eq!((added, ignored), (AMAZON_ROOTS.len(), 0));
    }

    #[test]
    fn reqwest_takes_the_appsync_config() {
        // reqwest downcasts the config to its own rustls version's type: a
        // different rustls here would fail at init, not at build time.
        let config = appsync_client_config().expect("default versions");
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .build()
            .expect("reqwest accepts this rustls config");
    }
}
