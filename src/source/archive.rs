//! A Flux artifact's bytes: the digest check and the in-memory extraction of
//! the few files a template source names. Pure (no IO beyond the bytes), so
//! every refusal is unit tested.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

/// Why an artifact cannot be used. `Oversize` and `Digest` are the source's
/// fault (Stalled until a new artifact arrives); the rest too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveError {
    /// `status.artifact.digest` is not `sha256:<hex>`.
    UnsupportedDigest(String),
    DigestMismatch {
        expected: String,
        actual: String,
    },
    Oversize(String),
    Corrupt(String),
    /// An entry that would land outside the archive root (`..`, absolute path).
    Traversal(String),
    InvalidPath(String),
}

impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsupportedDigest(d) => write!(f, "artifact digest {d:?} is not sha256:<hex>"),
            Self::DigestMismatch { expected, actual } => {
                write!(
                    f,
                    "artifact digest mismatch: status says {expected}, the download is {actual}"
                )
            }
            Self::Oversize(m) | Self::Corrupt(m) => f.write_str(m),
            Self::Traversal(p) => write!(f, "archive entry {p:?} points outside the archive"),
            Self::InvalidPath(m) => f.write_str(m),
        }
    }
}

/// Checks `bytes` against a Flux digest (`sha256:<hex>`).
pub fn verify(bytes: &[u8], digest: &str) -> Result<(), ArchiveError> {
    let Some(expected) = digest.strip_prefix("sha256:").filter(|h| h.len() == 64) else {
        return Err(ArchiveError::UnsupportedDigest(digest.to_string()));
    };
    let actual = hex::encode(Sha256::digest(bytes));
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(ArchiveError::DigestMismatch {
            expected: digest.to_string(),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(())
}

/// A path inside the artifact, normalised (`./a//b.yaml` -> `a/b.yaml`);
/// `..` and absolute paths are refused.
pub fn normalise(path: &str) -> Result<String, ArchiveError> {
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().unwrap_or_default().to_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(ArchiveError::Traversal(path.to_string()));
            }
        }
    }
    if parts.is_empty() {
        return Err(ArchiveError::InvalidPath(format!("path {path:?} names no file")));
    }
    Ok(parts.join("/"))
}

/// Limits on one artifact.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// All entries together, unpacked (a gzip bomb stops here).
    pub unpacked_bytes: u64,
    /// One wanted file.
    pub file_bytes: u64,
}

/// Reads the `wanted` files (normalised paths) out of a `.tar.gz`, in
/// memory. The whole archive is walked, so a bad entry anywhere refuses the
/// artifact, never half of it. Files not found are absent from the result.
pub fn extract(bytes: &[u8], wanted: &[&str], limits: Limits) -> Result<BTreeMap<String, Vec<u8>>, ArchiveError> {
    let unpacked = Capped {
        inner: GzDecoder::new(bytes),
        left: limits.unpacked_bytes,
    };
    let mut archive = tar::Archive::new(unpacked);
    let mut found = BTreeMap::new();
    let corrupt = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            ArchiveError::Oversize(format!("artifact unpacks to more than {} bytes", limits.unpacked_bytes))
        } else {
            ArchiveError::Corrupt(format!("artifact is not a readable .tar.gz: {e}"))
        }
    };
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).to_string();
        let name = match normalise(&raw) {
            Ok(name) => name,
            // The root directory entry (`./`) names nothing.
            Err(ArchiveError::InvalidPath(_)) => continue,
            Err(e) => return Err(e),
        };
        let kind = entry.header().entry_type();
        if !wanted.contains(&name.as_str()) {
            // Read through to count its unpacked size against the limit.
            std::io::copy(&mut entry, &mut std::io::sink()).map_err(corrupt)?;
            continue;
        }
        if !kind.is_file() {
            return Err(ArchiveError::InvalidPath(format!(
                "{name} in the artifact is not a regular file (links are not followed)"
            )));
        }
        if entry.size() > limits.file_bytes {
            return Err(ArchiveError::Oversize(format!(
                "{name} is {} bytes, over the limit of {} bytes",
                entry.size(),
                limits.file_bytes
            )));
        }
        let mut content = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut content).map_err(corrupt)?;
        found.insert(name, content);
    }
    Ok(found)
}

/// A reader that fails once more than `left` bytes have come through.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::FileTooLarge, "unpacked size limit"))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    const LIMITS: Limits = Limits {
        unpacked_bytes: 1 << 20,
        file_bytes: 1 << 16,
    };

    /// A .tar.gz of (path, content) regular files; paths are written raw, so
    /// `../x` makes a traversal entry.
    fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *content).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn the_digest_must_match_the_bytes() {
        let bytes = b"artifact";
        let good = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        assert_eq!(verify(bytes, &good), Ok(()));
        assert!(matches!(
            verify(b"tampered", &good),
            Err(ArchiveError::DigestMismatch { .. })
        ));
        assert!(matches!(
            verify(bytes, "sha512:abc"),
            Err(ArchiveError::UnsupportedDigest(_))
        ));
    }

    #[test]
    fn extracts_only_the_wanted_files() {
        let bytes = tarball(&[("./stacks/app.yaml", b"T"), ("README.md", b"R"), ("params.yaml", b"P")]);
        let files = extract(&bytes, &["stacks/app.yaml", "params.yaml", "missing"], LIMITS).unwrap();
        assert_eq!(files.get("stacks/app.yaml").map(Vec::as_slice), Some(&b"T"[..]));
        assert_eq!(files.get("params.yaml").map(Vec::as_slice), Some(&b"P"[..]));
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn traversal_entries_refuse_the_whole_archive() {
        let bytes = tarball(&[("app.yaml", b"T"), ("../../etc/passwd", b"x")]);
        assert_eq!(
            extract(&bytes, &["app.yaml"], LIMITS),
            Err(ArchiveError::Traversal("../../etc/passwd".into()))
        );
        assert!(matches!(normalise("/etc/passwd"), Err(ArchiveError::Traversal(_))));
        assert!(matches!(normalise("a/../../b"), Err(ArchiveError::Traversal(_))));
        assert_eq!(normalise("./a//b.yaml"), Ok("a/b.yaml".into()));
    }

    #[test]
    fn size_limits_hold_for_a_file_and_for_the_whole_archive() {
        let big = vec![b'x'; 100_000];
        let bytes = tarball(&[("app.yaml", &big)]);
        assert!(matches!(
            extract(&bytes, &["app.yaml"], LIMITS),
            Err(ArchiveError::Oversize(m)) if m.contains("app.yaml")
        ));
        // A file nobody asked for still counts against the unpacked total.
        let small = Limits {
            unpacked_bytes: 50_000,
            file_bytes: 1 << 16,
        };
        assert!(matches!(
            extract(&bytes, &["other.yaml"], small),
            Err(ArchiveError::Oversize(m)) if m.contains("unpacks to more than")
        ));
    }

    #[test]
    fn garbage_is_not_an_archive() {
        assert!(matches!(
            extract(b"not gzip", &["a"], LIMITS),
            Err(ArchiveError::Corrupt(_))
        ));
    }
}
