//! TLS to PostgreSQL: a throwaway cluster with `ssl = on` and a CA and
//! server certificate made here with the openssl CLI (the certificate
//! names `db.example.test` only). `verify-full` with the CA connects, and
//! the server sees an encrypted session; a wrong CA, or a host the
//! certificate does not name, is refused; `verify-ca` and `require`
//! connect without the name; `require` against a server without TLS fails
//! with a clear error. Skipped (saying so) where PostgreSQL or openssl is
//! missing.

mod util;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use mission_bus::{Json, MissionBus, NewMission};
use serde_json::json;
use util::pg::Cluster;

/// The host name in the server's certificate.
const NAME: &str = "db.example.test";

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A CA (`NAME.ca.crt`) in `dir`; with `server`, a server key and
/// certificate for [`NAME`] signed by it.
fn make_ca(dir: &Path, name: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.ca.key"),
            "-out",
            &format!("{name}.ca.crt"),
            "-subj",
            &format!("/CN=mission-bus test CA {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
}

fn make_server_cert(dir: &Path) -> Result<(), String> {
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName=DNS:{NAME}\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            &format!("/CN={NAME}"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "good.ca.crt",
            "-CAkey",
            "good.ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    )
}

/// The TLS cluster and its directory (with `good.ca.crt`, `wrong.ca.crt`).
fn tls_cluster() -> Option<&'static Cluster> {
    static C: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let c = C.get_or_init(|| {
        Command::new("openssl")
            .arg("version")
            .output()
            .map_err(|_| "no openssl CLI to make certificates".to_string())?;
        let dir = Cluster::workdir("tls")?;
        make_ca(&dir, "good")?;
        make_ca(&dir, "wrong")?;
        make_server_cert(&dir)?;
        for f in ["server.key", "server.crt"] {
            let p = dir.join(f);
            let ok = Command::new("chown")
                .args(["postgres:postgres", p.to_str().unwrap()])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("cannot chown {f} to postgres"));
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
        Cluster::start_in(
            &dir,
            &format!(
                "-c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key",
                d = dir.display()
            ),
        )
    });
    match c {
        Ok(c) => Some(c),
        Err(why) => {
            println!("skipped: TLS half ({why})");
            None
        }
    }
}

/// A fresh database on `c`, reached at `host` (the TCP address is always
/// 127.0.0.1) with `params`.
fn url(c: &Cluster, host: &str, params: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let db = format!(
        "tls{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    c.psql("postgres", &format!("CREATE DATABASE {db}"))
        .unwrap();
    format!(
        "postgres://postgres@{host}:{}/{db}?hostaddr=127.0.0.1&{params}",
        c.port
    )
}

fn ca(c: &Cluster, which: &str) -> String {
    c.dir.join(format!("{which}.ca.crt")).display().to_string()
}

fn open_err(url: &str) -> String {
    match MissionBus::open_url(url) {
        Ok(_) => panic!("{url} opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn verify_full_with_the_ca_connects_encrypted_and_works() {
    let Some(c) = util::pg::cluster().and(tls_cluster()) else {
        return;
    };
    let u = url(
        c,
        NAME,
        &format!("sslmode=verify-full&sslrootcert={}", ca(c, "good")),
    );
    let bus = MissionBus::open_url(&u).unwrap();
    bus.create_mission(NewMission::new("m", "T").lead("lead"))
        .unwrap();
    bus.join("m", "w", "write", Json::empty_object()).unwrap();
    let e = bus
        .publish("m", "w", "t", json!({"over": "tls"}).into())
        .unwrap();
    assert_eq!(e.sequence, 4);
    assert!(bus.verify("m").unwrap().problems.is_empty());
    // Every connection of this process, the listener's too, is encrypted.
    let db = u.split('/').nth(3).unwrap().split('?').next().unwrap();
    let count = |cond: &str| -> u32 {
        c.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.datname = '{db}' AND a.application_name LIKE 'mission-bus%' AND {cond}"
            ),
        )
        .unwrap()
        .parse()
        .unwrap()
    };
    assert!(count("true") >= 2, "the bus's connections are there");
    assert_eq!(count("NOT coalesce(s.ssl, false)"), 0, "none unencrypted");
}

#[test]
fn verification_failures_are_refused_with_the_reason() {
    let Some(c) = util::pg::cluster().and(tls_cluster()) else {
        return;
    };
    // Another CA signed nothing here.
    let e = open_err(&url(
        c,
        NAME,
        &format!("sslmode=verify-full&sslrootcert={}", ca(c, "wrong")),
    ));
    assert!(e.contains("certificate"), "{e}");
    assert!(e.contains("UnknownIssuer"), "{e}");
    // The certificate names db.example.test, not 127.0.0.1.
    let e = open_err(&url(
        c,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca(c, "good")),
    ));
    assert!(e.contains("not valid for name"), "{e}");
    // A root file that is not there.
    let e = open_err(&url(
        c,
        NAME,
        "sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
    ));
    assert!(
        e.contains("/nonexistent/root.crt") && e.contains("verify-full"),
        "{e}"
    );
    // An sslmode libpq does not have.
    let e = open_err(&url(c, NAME, "sslmode=always"));
    assert!(e.contains("sslmode=always"), "{e}");
}

#[test]
fn verify_ca_and_require_connect_without_the_name() {
    let Some(c) = util::pg::cluster().and(tls_cluster()) else {
        return;
    };
    for params in [
        format!("sslmode=verify-ca&sslrootcert={}", ca(c, "good")),
        "sslmode=require".to_string(),
    ] {
        let bus = MissionBus::open_url(&url(c, "127.0.0.1", &params)).unwrap();
        bus.create_mission(NewMission::new("m", "T").lead("lead"))
            .unwrap();
        assert_eq!(bus.state("m").unwrap().head, 2, "{params}");
    }
}

#[test]
fn requiring_tls_of_a_server_without_it_fails_clearly() {
    let Some(plain) = util::pg::cluster() else {
        return;
    };
    let u = format!("{}?sslmode=require", plain.database());
    let e = open_err(&u);
    assert!(e.contains("does not accept TLS"), "{e}");
    assert!(e.contains("sslmode"), "{e}");
    // prefer (the default) falls back to a plain connection.
    let u = format!("{}?sslmode=prefer", plain.database());
    MissionBus::open_url(&u).unwrap();
}
