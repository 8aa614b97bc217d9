//! HTTPS works out of the box (the default `rustls` feature), and a transport error's message
//! names its cause (refused, TLS, DNS, unsupported scheme) rather than leaving it to `Debug`.

use serde::Deserialize;
use serde_json::json;
use stitch::{Error, Runtime, TransportCause};
use stitch_tests::{tls, Reply, Upstream};

#[derive(Debug, Deserialize)]
struct User {
    id: u64,
    name: String,
}

// The README's example, base URL included.
#[stitch::seam(base_url = "https://api.example.com", timeout = "10s")]
trait Acme {
    #[stitch(get, path = "/users/{id}", pick = "data")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}

async fn user_server(certificates: &tls::Certificates) -> Upstream {
    tls::start(certificates, |seen| {
        Reply::json(json!({"data": {"id": 7, "name": seen.path}}))
    })
    .await
}

/// The transport error of a failed call, with its message.
fn transport(outcome: stitch::Result<User>) -> (TransportCause, String) {
    match outcome {
        Err(e @ Error::Transport { .. }) => (e.transport_cause().unwrap(), e.to_string()),
        other => panic!("expected a transport error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_https_base_url_works_against_a_server_whose_ca_is_trusted() {
    let certificates = tls::Certificates::generate();
    let up = user_server(&certificates).await;
    assert!(up.url().starts_with("https://localhost:"));
    let rt = Runtime::builder()
        .base_url(up.url())
        .root_certificates_pem(certificates.ca_pem.clone())
        .build()
        .unwrap();
    let user = AcmeClient::new(&rt).unwrap().user(7).await.unwrap();
    assert_eq!((user.id, user.name.as_str()), (7, "/users/7"));
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_reported_as_tls() {
    let certificates = tls::Certificates::generate();
    let up = user_server(&certificates).await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let (cause, message) = transport(AcmeClient::new(&rt).unwrap().user(7).await);
    assert_eq!(cause, TransportCause::Tls);
    assert!(
        message.contains("TLS handshake failed") && message.contains("certificate"),
        "{message}"
    );
    assert!(
        message.contains("root_certificates_pem"),
        "names the fix: {message}"
    );
    assert_eq!(up.hits(), 0, "nothing reached the server");
}

#[tokio::test]
async fn a_refused_connection_is_named() {
    // A port that was just free: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = Runtime::builder()
        .base_url(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let (cause, message) = transport(AcmeClient::new(&rt).unwrap().user(7).await);
    assert_eq!(cause, TransportCause::ConnectionRefused);
    assert!(message.contains("connection refused"), "{message}");
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_named() {
    // Reads the request, then hangs up without a byte of response.
    let url = stitch_tests::raw_server(|mut stream| async move {
        use tokio::io::AsyncReadExt;
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await;
    })
    .await;
    let rt = Runtime::builder().base_url(url).build().unwrap();
    let (cause, message) = transport(AcmeClient::new(&rt).unwrap().user(7).await);
    assert_eq!(cause, TransportCause::ConnectionClosed);
    assert!(message.contains("connection closed"), "{message}");
}

#[tokio::test]
async fn an_unresolvable_host_is_named_as_dns() {
    // `.invalid` never resolves (RFC 6761).
    let rt = Runtime::builder()
        .base_url("http://stitch-test.invalid")
        .build()
        .unwrap();
    let (cause, message) = transport(AcmeClient::new(&rt).unwrap().user(7).await);
    assert_eq!(cause, TransportCause::Dns);
    assert!(message.contains("DNS lookup failed"), "{message}");
}

#[tokio::test]
async fn a_scheme_the_http_client_refuses_is_named() {
    let up = Upstream::echo().await;
    let https_only = reqwest::Client::builder().https_only(true).build().unwrap();
    let rt = Runtime::builder()
        .base_url(up.url())
        .http_client(https_only)
        .build()
        .unwrap();
    let (cause, message) = transport(AcmeClient::new(&rt).unwrap().user(7).await);
    assert_eq!(cause, TransportCause::UnsupportedScheme);
    assert!(message.contains("scheme"), "{message}");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn root_certificates_are_refused_when_they_cannot_apply() {
    let certificates = tls::Certificates::generate();
    let config = |built: stitch::Result<Runtime>| match built {
        Err(Error::Config { reason, .. }) => reason,
        other => panic!("expected a configuration error, got {other:?}"),
    };
    let with_client = Runtime::builder()
        .http_client(reqwest::Client::new())
        .root_certificates_pem(certificates.ca_pem.clone())
        .build();
    assert!(config(with_client).contains("http_client"));
    let not_pem = Runtime::builder()
        .root_certificates_pem("not a certificate")
        .build();
    assert!(config(not_pem).contains("no certificate"));
}
