//! Connections: TLS as the URL's `sslmode` asks, and each connection's
//! cache of prepared statements.
//!
//! TLS is rustls (the `ring` provider), through `tokio-postgres-rustls`.
//! `sslmode` takes libpq's values: `disable`; `prefer` (the default:
//! encrypted when the server offers it); `require` (encrypted or no
//! connection; the certificate is not checked, as with libpq without a
//! root certificate); `verify-ca` (the chain must lead to a root of
//! `sslrootcert`); `verify-full` (that, and the host name or IP address
//! must be in the certificate). `sslrootcert=PATH` names the PEM file of
//! trusted roots (default `~/.postgresql/root.crt`; `system` is the
//! distribution's bundle). tokio-postgres itself only knows `disable`,
//! `prefer` and `require`, so the URL is rewritten before it sees it.
//!
//! Statements are prepared once per connection and kept: a query then costs
//! one round trip (Bind/Execute), and several can be pipelined.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the connection string asks of TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is refused.
    pub(crate) fn required(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }
}

/// A connection string split into what tokio-postgres parses and our TLS
/// settings.
#[derive(Debug)]
pub(crate) struct Target {
    /// The string for tokio-postgres (`sslmode` reduced to its three
    /// values, `sslrootcert` removed).
    pub(crate) url: String,
    pub(crate) mode: SslMode,
    pub(crate) root_cert: Option<PathBuf>,
}

/// Split the TLS parameters off a `postgres://` URL. Errors name the
/// parameter and the values understood.
pub(crate) fn split_tls(url: &str) -> Result<Target, String> {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, q),
        None => (url, ""),
    };
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "sslmode" => {
                mode = match percent_decode(v)?.as_str() {
                    "disable" => SslMode::Disable,
                    // libpq's `allow` tries without TLS first; prefer is
                    // the nearest (and never less safe).
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other} is not understood (disable, allow, prefer, \
                             require, verify-ca, verify-full)"
                        ))
                    }
                }
            }
            "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(v)?)),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(format!(
                    "{k} is not supported (client certificates and revocation lists): \
                     authenticate with a password, over sslmode=verify-full"
                ))
            }
            _ => kept.push(kv.to_string()),
        }
    }
    let pg_mode = match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    };
    kept.push(format!("sslmode={pg_mode}"));
    Ok(Target {
        url: format!("{head}?{}", kept.join("&")),
        mode,
        root_cert,
    })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in '{s}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8 once decoded"))
}

/// The TLS connector for `target` (used by tokio-postgres only when the
/// server is asked for TLS, i.e. unless `sslmode=disable`).
pub(crate) fn connector(target: &Target) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let config = match target.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = load_roots(target)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS set-up: {e}"))?;
            if target.mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The trusted roots of `verify-ca` / `verify-full`.
fn load_roots(target: &Target) -> Result<rustls::RootCertStore, String> {
    let path = match &target.root_cert {
        Some(p) if p.as_os_str() == "system" => PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        Some(p) => p.clone(),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
            .unwrap_or_else(|| PathBuf::from(".postgresql/root.crt")),
    };
    let mode = target.mode.name();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .map_err(|e| {
            format!(
                "sslmode={mode} needs trusted root certificates: cannot read {} ({e}); \
                 name a PEM file with sslrootcert=PATH",
                path.display()
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("sslrootcert {}: not PEM certificates ({e})", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "sslrootcert {}: no usable certificate in it",
            path.display()
        ));
    }
    Ok(roots)
}

/// `prefer` / `require`: the channel is encrypted and the handshake's
/// signatures are checked, but not who signed the certificate.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full check, except that the certificate may name
/// another host.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A client and the statements prepared on it. Its `query*` and
/// `execute` take SQL text and prepare it once per connection; everything
/// else is the client's (`Deref`).
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Conn {
    pub(crate) fn new(client: Client) -> Conn {
        Conn {
            client,
            statements: Mutex::new(HashMap::new()),
        }
    }

    /// `sql`, prepared on this connection (once).
    pub(crate) async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
        {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let s = self.statement(sql).await?;
        self.client.query(&s, params).await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let s = self.statement(sql).await?;
        self.client.query_opt(&s, params).await
    }

    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        let s = self.statement(sql).await?;
        self.client.query_one(&s, params).await
    }

    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        let s = self.statement(sql).await?;
        self.client.execute(&s, params).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_split_off_and_reduced() {
        let t = split_tls("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&x=1")
            .unwrap();
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(t.url, "postgres://u@h/db?x=1&sslmode=require");
        let t = split_tls("postgres://u@h/db").unwrap();
        assert_eq!(t.mode, SslMode::Prefer);
        assert_eq!(t.url, "postgres://u@h/db?sslmode=prefer");
        let t = split_tls("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(
            (t.mode, t.url.as_str()),
            (SslMode::Disable, "postgres://u@h/db?sslmode=disable")
        );
        let e = split_tls("postgres://u@h/db?sslmode=sometimes").unwrap_err();
        assert!(
            e.contains("sslmode=sometimes") && e.contains("verify-full"),
            "{e}"
        );
        let e = split_tls("postgres://u@h/db?sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert"), "{e}");
    }

    #[test]
    fn verify_modes_need_readable_roots() {
        let t = split_tls("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .unwrap();
        let e = connector(&t).err().expect("no roots");
        assert!(
            e.contains("sslmode=verify-full") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let t = split_tls(&format!(
            "postgres://h/db?sslmode=verify-ca&sslrootcert={}",
            junk.display()
        ))
        .unwrap();
        let e = connector(&t).err().expect("no usable roots");
        assert!(e.contains("junk.pem"), "{e}");
        assert!(connector(&split_tls("postgres://h/db?sslmode=require").unwrap()).is_ok());
    }
}
