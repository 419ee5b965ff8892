//! Downloading a checkpoint over plain HTTP (a local mirror) with the
//! registry's checks: the SHA-256 (full or published prefix) and the tensor
//! names and shapes. `https://` URLs are refused with a clear message, since
//! this crate has no TLS stack: download those with a browser or `curl`, then
//! run `verify` / `convert`.
//!
//! The body is streamed into a temporary file next to the output, hashed on
//! the way, checked, then renamed; on any failure the temporary file is
//! removed and the output is not touched.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::registry::{self, ChecksumCheck};

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchReport {
    /// The URL finally read (after redirects).
    pub url: String,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 (hex) of the file.
    pub sha256: String,
    /// The checksum against the registry.
    pub checksum: ChecksumCheck,
}

struct Url {
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Url> {
    let invalid = |m: &str| Error::Invalid(format!("URL {url:?}: {m}"));
    if url.starts_with("https://") {
        return Err(invalid(
            "https is not supported (no TLS in labelscope); download the file with a browser or curl, \
             then run `labelscope weights verify` or `convert`",
        ));
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| invalid("only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| invalid("bad port"))?),
        None => (authority, 80),
    };
    if host.is_empty() || authority.contains('@') {
        return Err(invalid("no host (or credentials in the URL, which are not supported)"));
    }
    Ok(Url { host: host.to_string(), port, path: path.to_string() })
}

/// Response headers, names in lower case.
type Headers = Vec<(String, String)>;

/// Status, headers and the reader positioned at the body.
fn request(url: &str) -> Result<(u16, Headers, BufReader<TcpStream>)> {
    let u = parse_url(url)?;
    let net = |e: std::io::Error| Error::Invalid(format!("{url}: {e}"));
    let stream = TcpStream::connect((u.host.as_str(), u.port)).map_err(net)?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(net)?;
    let mut w = stream.try_clone().map_err(net)?;
    write!(w, "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: labelscope\r\nConnection: close\r\n\r\n", u.path, u.host)
        .map_err(net)?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).map_err(net)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/1."))
        .ok_or_else(|| Error::Invalid(format!("{url}: not an HTTP response: {:?}", line.trim_end())))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(net)? == 0 {
            return Err(Error::Invalid(format!("{url}: the connection closed inside the headers")));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if headers.len() > 200 {
            return Err(Error::Invalid(format!("{url}: too many headers")));
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers, r))
}

fn header<'h>(h: &'h [(String, String)], name: &str) -> Option<&'h str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Copies the body to `out`, hashing it; checks Content-Length / chunked framing.
fn copy_body(
    url: &str,
    headers: &[(String, String)],
    r: &mut BufReader<TcpStream>,
    out: &mut dyn Write,
    tmp: &Path,
) -> Result<(u64, String)> {
    let net = |e: std::io::Error| Error::Invalid(format!("{url}: {e}"));
    let mut sha = crate::sha256::Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let mut put = |b: &[u8], total: &mut u64| -> Result<()> {
        sha.update(b);
        *total += b.len() as u64;
        out.write_all(b).map_err(|e| Error::io(tmp, e))
    };
    let chunked = header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).map_err(net)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| Error::Invalid(format!("{url}: bad chunk header {:?} (truncated?)", line.trim())))?;
            if size == 0 {
                break;
            }
            let mut left = size;
            while left > 0 {
                let n = r.read(&mut buf[..left.min(1 << 16)]).map_err(net)?;
                if n == 0 {
                    return Err(Error::Invalid(format!("{url}: the download was cut short after {total} bytes")));
                }
                put(&buf[..n], &mut total)?;
                left -= n;
            }
            line.clear();
            r.read_line(&mut line).map_err(net)?;
        }
    } else {
        let want = match header(headers, "content-length") {
            Some(v) => Some(v.parse::<u64>().map_err(|_| Error::Invalid(format!("{url}: bad Content-Length {v:?}")))?),
            None => None,
        };
        loop {
            let n = r.read(&mut buf).map_err(net)?;
            if n == 0 {
                break;
            }
            put(&buf[..n], &mut total)?;
        }
        if let Some(want) = want {
            if total != want {
                return Err(Error::Invalid(format!(
                    "{url}: the download was cut short: {total} of {want} bytes (Content-Length)"
                )));
            }
        }
    }
    Ok((total, sha.hex()))
}

/// Downloads `url` (default: the registry's) to `output`, checks its SHA-256
/// against the registry (a mismatch is an error unless `allow_unofficial`)
/// and its tensors against the model, then renames it into place.
pub fn fetch(model: &str, url: Option<&str>, output: &Path, allow_unofficial: bool) -> Result<FetchReport> {
    let spec = registry::model(model)?;
    let mut url = url.unwrap_or(&spec.url).to_string();
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = output.file_name().ok_or_else(|| Error::Invalid(format!("{}: not a file path", output.display())))?;
    let tmp = dir.join(format!(".{}.part-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<FetchReport> {
        let mut redirects = 0;
        let (headers, mut r) = loop {
            let (status, headers, r) = request(&url)?;
            match status {
                200 => break (headers, r),
                301 | 302 | 303 | 307 | 308 if redirects < 5 => {
                    let to = header(&headers, "location")
                        .ok_or_else(|| Error::Invalid(format!("{url}: redirect without a Location")))?;
                    url = if to.starts_with('/') {
                        let u = parse_url(&url)?;
                        format!("http://{}:{}{to}", u.host, u.port)
                    } else {
                        to.to_string()
                    };
                    redirects += 1;
                }
                s => return Err(Error::Invalid(format!("{url}: HTTP status {s}, expected 200"))),
            }
        };
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = std::io::BufWriter::new(file);
        let (bytes, sha256) = copy_body(&url, &headers, &mut r, &mut w, &tmp)?;
        let file = w.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        let checksum = spec.check_sha256(&sha256);
        if let ChecksumCheck::Mismatch { expected } = &checksum {
            if !allow_unofficial {
                return Err(Error::Checksum {
                    path: output.to_path_buf(),
                    model: spec.name.clone(),
                    message: format!(
                        "downloaded from {url}: SHA-256 {sha256} does not match the published {expected} of {} \
                         ({}); nothing was written (--allow-unofficial accepts other weights)",
                        spec.name, spec.official_file
                    ),
                });
            }
        }
        crate::convert::verify(&tmp, Some(model), None, true).map_err(|e| {
            Error::Invalid(format!(
                "{}: downloaded from {url}, but not a valid {model} checkpoint: {e}",
                output.display()
            ))
        })?;
        std::fs::rename(&tmp, output).map_err(|e| Error::io(output, e))?;
        Ok(FetchReport { url: url.clone(), bytes, sha256, checksum })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:8080/a/b.pth").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 8080, "/a/b.pth"));
        assert_eq!(parse_url("http://example.org").unwrap().path, "/");
        assert!(parse_url("https://x/y").err().unwrap().to_string().contains("https is not supported"));
        assert!(parse_url("ftp://x/y").is_err());
        assert!(parse_url("http://user:pw@x/y").is_err());
    }
}
