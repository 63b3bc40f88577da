//! The transfer: a blocking HTTP(S) client over rustls (ureq), writing to a
//! `.part` file that survives an interruption. A later attempt (a retry
//! here, or the next run) asks for the rest with `Range: bytes=N-`; a server
//! that ignores the range gets the file from the start.
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Attempts per download; a network error between them waits 1, 2, 4 ... s.
const ATTEMPTS: u32 = 5;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // A transfer that stalls for a minute is an error (then resumed),
        // not a hang; a long download as a whole has no limit.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .user_agent(concat!("nave-lab/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// An error worth another attempt (the network), or not (the server's answer).
enum Failure {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

/// Downloads `url` into `part`, continuing what `part` already holds.
pub fn download(url: &str, part: &Path) -> anyhow::Result<()> {
    resolve(url)?;
    let agent = agent();
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let wait = Duration::from_secs(1 << (attempt - 1));
            crate::warn!(
                "{url}: {:#}; retrying in {} s (attempt {} of {ATTEMPTS})",
                last.as_ref().expect("a failure before a retry"),
                wait.as_secs(),
                attempt + 1
            );
            std::thread::sleep(wait);
        }
        match attempt_once(&agent, url, part) {
            Ok(()) => return Ok(()),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(e)) => last = Some(e),
        }
    }
    Err(last
        .expect("at least one attempt")
        .context(format!("{ATTEMPTS} attempts failed")))
}

/// Fails at once, without retries, when the URL's host does not resolve
/// (no network, or a mistyped mirror).
fn resolve(url: &str) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let uri: ureq::http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let host = uri.host().with_context(|| format!("{url} names no host"))?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host} (no network here?)"))?;
    Ok(())
}

fn attempt_once(agent: &ureq::Agent, url: &str, part: &Path) -> Result<(), Failure> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request.call().map_err(|e| match e {
        // A name that does not resolve, or a port nobody listens on, will
        // not answer a second later either.
        ureq::Error::HostNotFound | ureq::Error::BadUri(_) | ureq::Error::ConnectionFailed => {
            Failure::Fatal(e.into())
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            Failure::Fatal(io.into())
        }
        e => Failure::Retry(e.into()),
    })?;
    let status = response.status().as_u16();
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (append, total) = match status {
        206 => (true, length.map(|l| l + have)),
        200 => (false, length),
        // The part already holds the whole file.
        416 if have > 0 => return Ok(()),
        404 | 410 => {
            return Err(Failure::Fatal(anyhow::anyhow!(
                "{url}: HTTP {status} (not there; a mirror must serve the file under this name)"
            )))
        }
        s if s >= 500 || s == 429 || s == 408 => {
            return Err(Failure::Retry(anyhow::anyhow!("{url}: HTTP {s}")))
        }
        s => return Err(Failure::Fatal(anyhow::anyhow!("{url}: HTTP {s}"))),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .with_context(|| format!("opening {}", part.display()))
        .map_err(Failure::Fatal)?;
    let start = if append { have } else { 0 };
    let name = part
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".part").to_string())
        .unwrap_or_default();
    let bar = crate::ui::byte_bar(total, &format!("downloading {name}"));
    bar.set_position(start);
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = start;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                bar.abandon();
                let _ = file.sync_all();
                return Err(Failure::Retry(anyhow::Error::new(e).context(format!(
                    "connection lost after {written} bytes (kept in {} to resume)",
                    part.display()
                ))));
            }
        };
        file.write_all(&buf[..n])
            .with_context(|| format!("writing {}", part.display()))
            .map_err(Failure::Fatal)?;
        written += n as u64;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    file.sync_all()
        .with_context(|| format!("syncing {}", part.display()))
        .map_err(Failure::Fatal)?;
    if let Some(t) = total {
        if written != t {
            return Err(Failure::Retry(anyhow::anyhow!(
                "{url}: {written} of {t} bytes received"
            )));
        }
    }
    if written == 0 {
        return Err(Failure::Fatal(anyhow::anyhow!(
            "{url}: the server sent an empty file"
        )));
    }
    Ok(())
}
