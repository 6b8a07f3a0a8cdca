//! `--web.config.file` as exporter-toolkit defines it: basic auth with bcrypt, TLS with the
//! configured certificate (and its rotation), client certificates, headers, rate limit.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mcpwatch_core::web::WebServer;
use mcpwatch_core::{ExporterService, ScrapeEngine};
use mcpwatch_tests::exposition::checked;
use mcpwatch_tests::http::{client, tls_client};
use mcpwatch_tests::wait_for_async;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

async fn serve(web_config: &Path) -> SocketAddr {
    let server = WebServer::bind(&["127.0.0.1:0".to_owned()], Some(web_config))
        .await
        .expect("bind with web config");
    let address = server.local_addrs()[0];
    let engine = ScrapeEngine::builder().build();
    tokio::spawn(server.serve(ExporterService::new(engine), std::future::pending()));
    address
}

/// A self-signed server certificate for 127.0.0.1 and localhost: (cert PEM, key PEM, DER).
fn server_certificate() -> (String, String, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate");
    (
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
        certified.cert.der().to_vec(),
    )
}

#[tokio::test]
async fn basic_auth_refuses_wrong_passwords() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = bcrypt::hash("scrape-secret", 4).expect("bcrypt");
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  prometheus: '{hash}'\nhttp_server_config:\n  headers:\n    \
             X-Frame-Options: deny\n"
        ),
    )
    .expect("write");
    let address = serve(&web).await;
    let http = client();
    let url = format!("http://{address}/metrics");

    let anonymous = http.get(&url).send().await.expect("request");
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Basic")
    );
    assert_eq!(anonymous.headers()["x-frame-options"], "deny");

    let wrong = http
        .get(&url)
        .basic_auth("prometheus", Some("guess"))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let unknown = http
        .get(&url)
        .basic_auth("someone", Some("scrape-secret"))
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 401);

    for _ in 0..2 {
        let right = http
            .get(&url)
            .basic_auth("prometheus", Some("scrape-secret"))
            .send()
            .await
            .expect("request");
        assert_eq!(right.status(), 200);
        assert!(checked(right.text().await.expect("body")).contains("mcpwatch_build_info"));
    }
    let health = http
        .get(format!("http://{address}/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 401, "every endpoint is protected");
}

#[tokio::test]
async fn tls_serves_the_configured_certificate_and_follows_its_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, der) = server_certificate();
    std::fs::write(dir.path().join("server.crt"), &cert).expect("write");
    std::fs::write(dir.path().join("server.key"), &key).expect("write");
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n",
    )
    .expect("write");
    let address = serve(&web).await;

    let peer_certificate = |ca: String| async move {
        let response = tls_client(&ca, None)
            .get(format!("https://{address}/metrics"))
            .send()
            .await
            .ok()?;
        assert_eq!(response.status(), 200);
        response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec))
    };
    assert_eq!(peer_certificate(cert.clone()).await, Some(der));

    // Plain HTTP is not served on a TLS listener.
    assert!(
        client()
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );

    // A renewed certificate is picked up without a restart.
    let (new_cert, new_key, new_der) = server_certificate();
    std::fs::write(dir.path().join("server.key"), &new_key).expect("write");
    std::fs::write(dir.path().join("server.crt"), &new_cert).expect("write");
    wait_for_async("the renewed certificate", Duration::from_secs(30), || {
        let peer = peer_certificate(new_cert.clone());
        let expected = new_der.clone();
        async move { peer.await.filter(|d| *d == expected) }
    })
    .await;
}

#[tokio::test]
async fn client_certificates_are_required_and_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = server_certificate();

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let client_key = KeyPair::generate().expect("key");
    let client_cert = CertificateParams::new(vec!["prometheus.example".to_owned()])
        .expect("params")
        .signed_by(&client_key, &ca)
        .expect("client certificate");

    std::fs::write(dir.path().join("server.crt"), &cert).expect("write");
    std::fs::write(dir.path().join("server.key"), &key).expect("write");
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).expect("write");
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
         client_allowed_sans: [prometheus.example]\n",
    )
    .expect("write");
    let address = serve(&web).await;
    let url = format!("https://{address}/metrics");

    let without = tls_client(&cert, None).get(&url).send().await;
    assert!(
        without.is_err(),
        "a client without a certificate is refused"
    );

    let with = tls_client(
        &cert,
        Some((&client_cert.pem(), &client_key.serialize_pem())),
    )
    .get(&url)
    .send()
    .await
    .expect("request with a client certificate");
    assert_eq!(with.status(), 200);

    // A certificate from the right CA but for another name is refused.
    let other_key = KeyPair::generate().expect("key");
    let other = CertificateParams::new(vec!["intruder.example".to_owned()])
        .expect("params")
        .signed_by(&other_key, &ca)
        .expect("certificate");
    let refused = tls_client(&cert, Some((&other.pem(), &other_key.serialize_pem())))
        .get(&url)
        .send()
        .await;
    assert!(refused.is_err(), "client_allowed_sans is enforced");
}

#[tokio::test]
async fn rate_limit_answers_429() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "rate_limit:\n  interval: 1h\n  burst: 2\n").expect("write");
    let address = serve(&web).await;
    let http = client();
    let url = format!("http://{address}/health");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            http.get(&url)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
}
