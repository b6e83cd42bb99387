//! TLS for the transport tests, made here with no tool outside the build: a certificate authority of the
//! test's own, a TLS-terminating proxy (optionally demanding a client certificate) in front of any TCP
//! service, and a private PostgreSQL cluster that accepts only TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::process::free_port;

/// A certificate and its private key, in PEM and DER.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// A certificate authority that exists only for one test.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// Where [`TestCa::write`] puts files.
    pub dir: PathBuf,
}

impl TestCa {
    pub fn new() -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "system-tests CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        let dir = std::env::temp_dir().join(format!("test-ca-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { cert, key, dir })
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> anyhow::Result<Issued> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    /// A server certificate for `names` (host names or IP addresses).
    pub fn server(&self, names: &[&str]) -> anyhow::Result<Issued> {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate, for mutual TLS.
    pub fn client(&self, name: &str) -> anyhow::Result<Issued> {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// Writes `contents` to `name` in the CA's directory and returns the path.
    pub fn write(&self, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, contents)?;
        Ok(path)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Accepts TLS on a port of its own and forwards the plain bytes to `upstream`, as a load balancer or a
/// service mesh sidecar would. With `client_ca`, only clients presenting a certificate of that CA get through.
pub struct TlsProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    pub async fn start(
        server: &Issued,
        upstream: SocketAddr,
        alpn: &[&[u8]],
        client_ca: Option<&TestCa>,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.cert.der().clone())?;
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone()));
        let mut config = builder.with_single_cert(vec![server.cert_der.clone()], key)?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", free_port()?)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A failed handshake (no or a wrong client certificate) just closes the connection.
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let Ok(mut plain) = TcpStream::connect(upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(Self { addr, task })
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A private PostgreSQL cluster on a port of its own that accepts only TLS connections (`hostssl`; plain TCP
/// is rejected), with a server certificate of `ca` for `localhost`. Stopped and removed on drop.
pub struct TlsPostgres {
    pub port: u16,
    dir: PathBuf,
}

impl TlsPostgres {
    pub fn start(ca: &TestCa) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("tls-pg-{}", uuid::Uuid::new_v4().simple()));
        let port = free_port()?;
        let cluster = Self { port, dir };
        let data = cluster.dir.join("data");
        std::fs::create_dir_all(&cluster.dir)?;
        cluster.own(&cluster.dir)?;
        cluster.as_owner(
            &postgres_bin("initdb")?,
            &["-D", path(&data)?, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        )?;
        let server = ca.server(&["localhost", "127.0.0.1"])?;
        std::fs::write(data.join("server.crt"), &server.cert_pem)?;
        std::fs::write(data.join("server.key"), &server.key_pem)?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
        )?;
        set_private(&data.join("server.key"))?;
        cluster.own(&cluster.dir)?;
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c ssl=on -c ssl_cert_file=server.crt \
             -c ssl_key_file=server.key -c max_connections=50 -c fsync=off",
            path(&cluster.dir)?
        );
        let log = cluster.dir.join("server.log");
        cluster.as_owner(
            &postgres_bin("pg_ctl")?,
            &["-D", path(&data)?, "-l", path(&log)?, "-w", "-t", "60", "-o", &options, "start"],
        )?;
        Ok(cluster)
    }

    /// A URL of database `database` with `sslmode` and, when given, the CA file to verify against.
    pub fn url(&self, database: &str, sslmode: &str, ca_file: Option<&Path>) -> String {
        let ca = ca_file.map(|file| format!("&sslrootcert={}", file.display())).unwrap_or_default();
        format!("postgres://postgres@localhost:{}/{database}?sslmode={sslmode}{ca}", self.port)
    }

    fn as_owner(&self, program: &Path, args: &[&str]) -> anyhow::Result<()> {
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        let output = command.args(args).output().with_context(|| format!("running {}", program.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "{} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user.
    fn own(&self, dir: &Path) -> anyhow::Result<()> {
        if running_as_root() {
            let status = Command::new("chown").args(["-R", "postgres", path(dir)?]).status()?;
            anyhow::ensure!(status.success(), "chown of {} failed", dir.display());
        }
        Ok(())
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        if let Ok(pg_ctl) = postgres_bin("pg_ctl") {
            let data = self.dir.join("data");
            let _ = path(&data).map(|data| self.as_owner(&pg_ctl, &["-D", data, "-m", "immediate", "stop"]));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|out| out.stdout.trim_ascii() == b"0").unwrap_or(false)
}

fn set_private(file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A PostgreSQL server program (`initdb`, `pg_ctl`), from the newest installed version.
fn postgres_bin(name: &str) -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|dir| Some(dir.ok()?.path().join("bin").join(name))).collect())
        .unwrap_or_default();
    versions.sort();
    versions.into_iter().rev().find(|candidate| candidate.exists()).with_context(|| {
        format!("{name} is not installed (Debian's postgresql package puts it in /usr/lib/postgresql/*/bin)")
    })
}
