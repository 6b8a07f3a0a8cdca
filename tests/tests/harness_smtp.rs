//! The SMTP harness against a standard client (Python's `smtplib`): plain, STARTTLS,
//! implicit TLS, AUTH, refused recipients, a stop and a restart on the same port; and the
//! parsing of what the server received.

use std::path::Path;

use mcpwatch_tests::smtp::{SmtpOptions, SmtpServer, SmtpTls};
use mcpwatch_tests::tools::{pipe, require};

/// A client with Python's `smtplib`: `mode port [ca]`; prints what happened, one line each.
const CLIENT: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage

mode, port = sys.argv[1], int(sys.argv[2])
context = ssl.create_default_context(cafile=sys.argv[3]) if len(sys.argv) > 3 else None

def message(subject):
    msg = EmailMessage()
    msg["From"] = "Alerts <alerts@example.org>"
    msg["To"] = "oncall@example.org, dba@example.org"
    msg["Subject"] = subject
    msg.set_content("DiskFull on db1: 97 % used — act now.\n", cte="quoted-printable")
    msg.add_alternative("<p>DiskFull on <b>db1</b> — 97 %</p>\n", subtype="html", cte="base64")
    return msg

def send(client, subject):
    client.send_message(message(subject), "alerts@example.org",
                        ["oncall@example.org", "dba@example.org"])
    print("sent")

def attempt(what, action):
    try:
        action()
        print(f"{what}: ok")
    except smtplib.SMTPRecipientsRefused as e:
        print(f"{what}: refused " + " ".join(str(code) for code, _ in e.recipients.values()))
    except smtplib.SMTPResponseException as e:
        print(f"{what}: {e.smtp_code}")

if mode == "plain":
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        send(c, "Plain ✓ Café")
elif mode == "starttls":
    with smtplib.SMTP("localhost", port, timeout=10) as c:
        c.ehlo()
        print("auth before tls:", c.has_extn("auth"))
        attempt("mail before tls", lambda: send(c, "too early"))
        c.starttls(context=context)
        c.ehlo()
        print("auth after tls:", c.has_extn("auth"))
        attempt("mail before auth", lambda: send(c, "too early"))
        attempt("bad password", lambda: c.login("alerts", "wrong"))
        c.login("alerts", "s3cret")
        send(c, "over STARTTLS")
elif mode == "implicit":
    for host in ("127.0.0.1", "localhost"):
        with smtplib.SMTP_SSL(host, port, context=context, timeout=10) as c:
            c.login("alerts", "s3cret")
            send(c, f"implicit TLS to {host}")
elif mode == "plain-auth":
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.ehlo()
        print("auth offered:", c.has_extn("auth"))
        attempt("mail before auth", lambda: send(c, "too early"))
        c.login("alerts", "s3cret")
        send(c, "plain with AUTH")
elif mode == "reject":
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        attempt("send", lambda: send(c, "refused"))
elif mode == "connect":
    try:
        smtplib.SMTP("127.0.0.1", port, timeout=5).quit()
        print("connected")
    except OSError:
        print("refused")
"#;

fn client(mode: &str, server: &SmtpServer, ca: Option<&Path>) -> String {
    let python = require("python3", "apt-get install -y python3");
    let port = server.port().to_string();
    let mut args = vec!["-c", CLIENT, mode, &port];
    let ca = ca.map(|p| p.display().to_string());
    if let Some(ca) = &ca {
        args.push(ca);
    }
    let (code, stdout, stderr) = pipe(&python, &args, b"");
    assert_eq!(
        code,
        Some(0),
        "smtplib {mode}: {stdout}{stderr}\n{}",
        server.log()
    );
    stdout
}

fn write_ca(tls: &SmtpTls, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &tls.ca_pem).expect("write ca.pem");
    path
}

#[test]
fn plain_smtp_keeps_and_parses_the_message() {
    let server = SmtpServer::start(SmtpOptions::default());
    assert_eq!(client("plain", &server, None), "sent\n");
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{}", server.log());
    let mail = &messages[0];
    assert_eq!(mail.from, "alerts@example.org");
    assert_eq!(mail.to, ["oncall@example.org", "dba@example.org"]);
    assert!(!mail.tls);
    assert_eq!(mail.login, None);
    assert_eq!(mail.subject().as_deref(), Some("Plain ✓ Café"));
    assert!(mail.raw.contains("=?utf-8?b?"), "{}", mail.raw);
    assert_eq!(
        mail.header("To").as_deref(),
        Some("oncall@example.org, dba@example.org")
    );
    assert_eq!(mail.part_types(), ["text/plain", "text/html"]);
    assert!(
        mail.raw
            .contains("Content-Transfer-Encoding: quoted-printable")
    );
    assert!(mail.raw.contains("Content-Transfer-Encoding: base64"));
    assert_eq!(
        mail.text().as_deref(),
        Some("DiskFull on db1: 97 % used — act now.\n")
    );
    assert_eq!(
        mail.html().as_deref(),
        Some("<p>DiskFull on <b>db1</b> — 97 %</p>\n")
    );
    assert!(mail.received_at <= std::time::SystemTime::now());
}

#[test]
fn starttls_is_required_and_auth_offered_only_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = SmtpTls::generate();
    let ca = write_ca(&tls, &dir);
    let server = SmtpServer::start(SmtpOptions {
        tls: Some(tls),
        auth: Some(("alerts".to_owned(), "s3cret".to_owned())),
        ..SmtpOptions::default()
    });
    assert_eq!(
        client("starttls", &server, Some(&ca)),
        "auth before tls: False\nmail before tls: 530\nauth after tls: True\n\
         mail before auth: 530\nbad password: 535\nsent\n"
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].tls);
    assert_eq!(messages[0].login.as_deref(), Some("alerts"));
    assert_eq!(messages[0].subject().as_deref(), Some("over STARTTLS"));
}

#[test]
fn implicit_tls_with_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = SmtpTls::generate();
    let ca = write_ca(&tls, &dir);
    let server = SmtpServer::start(SmtpOptions {
        tls: Some(tls),
        implicit_tls: true,
        auth: Some(("alerts".to_owned(), "s3cret".to_owned())),
        ..SmtpOptions::default()
    });
    assert_eq!(client("implicit", &server, Some(&ca)), "sent\nsent\n");
    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    assert!(
        messages
            .iter()
            .all(|m| m.tls && m.login.as_deref() == Some("alerts"))
    );
    assert_eq!(
        messages[1].subject().as_deref(),
        Some("implicit TLS to localhost")
    );
}

#[test]
fn auth_without_tls_and_refused_recipients() {
    let server = SmtpServer::start(SmtpOptions {
        auth: Some(("alerts".to_owned(), "s3cret".to_owned())),
        ..SmtpOptions::default()
    });
    assert_eq!(
        client("plain-auth", &server, None),
        "auth offered: True\nmail before auth: 530\nsent\n"
    );
    assert_eq!(server.messages()[0].login.as_deref(), Some("alerts"));

    let refusing = SmtpServer::start(SmtpOptions {
        reject_code: Some(550),
        ..SmtpOptions::default()
    });
    assert_eq!(client("reject", &refusing, None), "send: refused 550 550\n");
    assert!(refusing.messages().is_empty());
    assert!(
        refusing.log().contains("rejected RCPT TO"),
        "{}",
        refusing.log()
    );
}

#[test]
fn stops_and_restarts_on_the_same_port() {
    let mut server = SmtpServer::start(SmtpOptions::default());
    let port = server.port();
    assert_eq!(client("plain", &server, None), "sent\n");
    server.stop();
    assert!(!server.is_running());
    assert_eq!(client("connect", &server, None), "refused\n");
    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(client("plain", &server, None), "sent\n");
    assert_eq!(server.messages().len(), 2);
    assert_eq!(
        server.log().matches("listening on").count(),
        2,
        "{}",
        server.log()
    );
}
