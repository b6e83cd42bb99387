//! Temporal over TLS: a TLS-terminating proxy that demands a client certificate stands in front of the dev
//! server (which has no TLS of its own), and the settings the worker and the API read (the SDK's own
//! `TEMPORAL_TLS_*` variables) connect through it; without the client certificate they do not.

use std::time::Duration;

use advances_workflows::temporal::{check, connect, TemporalSettings};
use system_tests::temporal::TestTemporal;
use system_tests::tls::{TestCa, TlsProxy};

#[tokio::test]
async fn the_services_reach_temporal_over_mutual_tls_and_not_without_their_certificate() -> anyhow::Result<()> {
    let temporal = TestTemporal::start().await?;
    let ca = TestCa::new()?;
    let proxy = TlsProxy::start(&ca.server(&["localhost"])?, temporal.address.parse()?, &[b"h2"], Some(&ca)).await?;
    let client = ca.client("advances-worker")?;
    let files = [
        ("TEMPORAL_ADDRESS", format!("localhost:{}", proxy.addr.port())),
        ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", ca.write("ca.pem", &ca.pem())?.display().to_string()),
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", ca.write("client.pem", &client.cert_pem)?.display().to_string()),
        ("TEMPORAL_TLS_CLIENT_KEY_PATH", ca.write("client.key", &client.key_pem)?.display().to_string()),
    ];
    let settings_of = |names: &[&str]| {
        TemporalSettings::read(|name| {
            files.iter().find(|(n, _)| *n == name && names.contains(n)).map(|(_, value)| value.clone())
        })
    };

    let all: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    let mutual = settings_of(&all)?;
    assert!(mutual.tls() && mutual.mtls());
    let connected = connect(&mutual, "tls-test", Duration::from_secs(30)).await?;
    check(&connected, "default").await?;

    // The proxy demands a client certificate: TLS with the CA alone does not get through.
    let server_only = settings_of(&["TEMPORAL_ADDRESS", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"])?;
    assert!(server_only.tls() && !server_only.mtls());
    assert!(connect(&server_only, "tls-test", Duration::from_secs(2)).await.is_err());
    // Nor does a plain connection.
    assert!(connect(&settings_of(&["TEMPORAL_ADDRESS"])?, "tls-test", Duration::from_secs(2)).await.is_err());
    drop(proxy);
    temporal.stop();
    Ok(())
}
