//! The devstack's certificate for its HTTPS listener.
//!
//! Place in the data path: client (browser, Amplify) --sendPrompt over
//! **HTTPS**--> AppSync -> ... -> AppSync --onChunk over **`wss://`**-->
//! subscriber.
//!
//! Amplify JS v6 turns every GraphQL endpoint into a `wss://` real-time URL
//! (`<endpoint>/realtime` for a custom domain), and a page served over HTTPS
//! may only open secure sockets, so a browser needs the API over TLS. The
//! devstack makes its own small certificate authority and a server certificate
//! for `localhost`, `127.0.0.1` and `::1` signed by it, like a private CA would
//! for an AppSync custom domain. Clients trust it by taking the CA certificate
//! (`NODE_EXTRA_CA_CERTS`, a browser's certificate settings) or by skipping the
//! check (a test browser's `ignoreHTTPSErrors`).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// How long a server certificate is valid. Apple's platforms refuse TLS server
/// certificates valid for more than 825 days, even from a private CA; browsers
/// cap public ones at 398.
const SERVER_DAYS: i64 = 397;

/// A CA certificate and the server certificate it signed, all PEM.
#[derive(Clone, Debug)]
pub struct DevCertificate {
    /// The CA certificate clients may trust.
    pub ca_pem: String,
    /// The server certificate (leaf only; the CA is not sent).
    pub cert_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub key_pem: String,
    /// When the server certificate expires, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// Why no certificate could be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen could not make a key or a certificate.
    #[error("could not generate the devstack certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The certificate directory could not be created or written.
    #[error("could not read or write the devstack certificate in {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl DevCertificate {
    /// A fresh CA and a server certificate for the loopback names, valid from
    /// a day ago for [`SERVER_DAYS`] days.
    ///
    /// # Errors
    ///
    /// [`TlsError::Generate`] if rcgen fails.
    pub fn generate() -> Result<Self, TlsError> {
        let now = chrono::Utc::now();
        let ca_key = KeyPair::generate()?;
        let ca_params = ca_params(now)?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate()?;
        let not_after = now + chrono::Duration::days(SERVER_DAYS);
        let cert = server_params(now, not_after)?.signed_by(&key, &issuer)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: not_after.timestamp(),
        })
    }

    /// The certificate kept in `dir` (`ca.pem`, `server.pem`, `server-key.pem`,
    /// `not-after`), so a browser that was told to trust it keeps trusting it
    /// across restarts; a new one is made and written when there is none or it
    /// expires within a day.
    ///
    /// # Errors
    ///
    /// [`TlsError::Generate`] if a new one cannot be made, [`TlsError::Io`] if
    /// it cannot be written (an unreadable old one is simply replaced).
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        if let Some(existing) = Self::load(dir) {
            let tomorrow = chrono::Utc::now().timestamp() + 86_400;
            if existing.not_after > tomorrow {
                return Ok(existing);
            }
        }
        let fresh = Self::generate()?;
        fresh.save(dir)?;
        Ok(fresh)
    }

    /// Where the CA certificate of [`Self::load_or_create`] lives in `dir`.
    pub fn ca_path(dir: &Path) -> std::path::PathBuf {
        dir.join("ca.pem")
    }

    fn load(dir: &Path) -> Option<Self> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        Some(Self {
            ca_pem: read("ca.pem")?,
            cert_pem: read("server.pem")?,
            key_pem: read("server-key.pem")?,
            not_after: read("not-after")?.trim().parse().ok()?,
        })
    }

    fn save(&self, dir: &Path) -> Result<(), TlsError> {
        let io = |source| TlsError::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        for (name, text) in [
            ("ca.pem", self.ca_pem.as_str()),
            ("server.pem", self.cert_pem.as_str()),
            ("server-key.pem", self.key_pem.as_str()),
            ("not-after", &self.not_after.to_string()),
        ] {
            std::fs::write(dir.join(name), text).map_err(io)?;
        }
        Ok(())
    }
}

fn ca_params(now: chrono::DateTime<chrono::Utc>) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("bedrock-appsync-stream devstack CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid(&mut params, now, now + chrono::Duration::days(10 * 365));
    Ok(params)
}

fn server_params(
    now: chrono::DateTime<chrono::Utc>,
    not_after: chrono::DateTime<chrono::Utc>,
) -> Result<CertificateParams, rcgen::Error> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = name("localhost");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    valid(&mut params, now, not_after);
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Valid from the day before `from` (a clock a little behind still accepts
/// it) to `to`, in whole days (midnight UTC), as rcgen takes dates.
fn valid(
    params: &mut CertificateParams,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) {
    use chrono::Datelike;
    let from = from - chrono::Duration::days(1);
    params.not_before = rcgen::date_time_ymd(from.year(), from.month() as u8, from.day() as u8);
    params.not_after = rcgen::date_time_ymd(to.year(), to.month() as u8, to.day() as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_ca_and_a_server_certificate() {
        let cert = DevCertificate::generate().expect("generated");
        assert!(cert.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(cert.ca_pem, cert.cert_pem);
        let days = (cert.not_after - chrono::Utc::now().timestamp()) / 86_400;
        assert!((SERVER_DAYS - 1..=SERVER_DAYS).contains(&days), "{days}");
    }

    #[test]
    fn keeps_the_certificate_across_loads_and_replaces_an_expired_one() {
        let dir = std::env::temp_dir().join(format!("devstack-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = DevCertificate::load_or_create(&dir).expect("created");
        let second = DevCertificate::load_or_create(&dir).expect("loaded");
        assert_eq!(first.cert_pem, second.cert_pem);
        assert_eq!(
            first.ca_pem,
            std::fs::read_to_string(DevCertificate::ca_path(&dir)).unwrap()
        );
        std::fs::write(dir.join("not-after"), "0").expect("written");
        let third = DevCertificate::load_or_create(&dir).expect("renewed");
        assert_ne!(first.cert_pem, third.cert_pem);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
