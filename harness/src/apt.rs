//! A private apt: its own sources, lists and download cache below klpt's
//! cache, using the mirror the machine is already configured with. Fetching
//! other suites or foreign architectures therefore never touches the host's
//! apt state, and a flaky foreign index cannot break the host's `apt-get update`.

use crate::error::{run, Error, IoContext, Result};
use crate::event::{emit, Event};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

pub struct Apt {
    root: PathBuf,
    /// Debian architecture name (amd64, arm64, s390x, ppc64el).
    pub arch: String,
    pub suite: String,
}

/// The host's Debian mirror URI and keyring, read from its apt sources.
pub fn host_mirror() -> Result<(String, String)> {
    let mut text = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|x| x == "sources" || x == "list") {
                text.push_str("\n\n");
                text.push_str(&std::fs::read_to_string(&f).unwrap_or_default());
            }
        }
    }
    parse_mirror(&text).ok_or_else(|| Error::Other("no Debian mirror with the `main` component found in /etc/apt/sources.list{,.d}; klpt fetches kernels and guest packages through it".into()))
}

/// The first non-security Debian entry with `main`, from one-line or deb822 sources.
fn parse_mirror(text: &str) -> Option<(String, String)> {
    let default_key = "/usr/share/keyrings/debian-archive-keyring.gpg".to_string();
    // deb822 stanzas
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
        };
        if let (Some(uris), Some(comps)) = (field("URIs"), field("Components")) {
            let uri = uris.split_whitespace().next()?.to_string();
            if comps.split_whitespace().any(|c| c == "main") && !uri.contains("security") && field("Types").is_some_and(|t| t.contains("deb")) && uri.contains("debian") {
                return Some((uri, field("Signed-By").unwrap_or(default_key)));
            }
        }
    }
    for l in text.lines() {
        let l = l.trim();
        if !l.starts_with("deb ") {
            continue;
        }
        let mut key = default_key.clone();
        let mut rest = l[4..].trim();
        if rest.starts_with('[') {
            let end = rest.find(']')?;
            for opt in rest[1..end].split_whitespace() {
                if let Some(k) = opt.strip_prefix("signed-by=") {
                    key = k.to_string();
                }
            }
            rest = rest[end + 1..].trim();
        }
        let parts: Vec<&str> = rest.split_whitespace().collect();
        if parts.len() >= 3 && parts[2..].contains(&"main") && !parts[0].contains("security") && parts[0].contains("debian") {
            return Some((parts[0].to_string(), key));
        }
    }
    None
}

/// The host's Debian release codename (e.g. `bookworm`).
pub fn host_codename() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "stable".into())
}

impl Apt {
    pub fn new(suite: &str, arch: &str) -> Result<Apt> {
        let (uri, key) = host_mirror()?;
        let root = crate::cache::dir(&format!("apt/{suite}-{arch}"));
        for d in ["lists/partial", "archives/partial", "etc/preferences.d", "debs"] {
            std::fs::create_dir_all(root.join(d)).ctx(|| format!("create {}", root.display()))?;
        }
        let sources = format!("deb [arch={arch} signed-by={key}] {uri} {suite} main\n");
        let sl = root.join("etc/sources.list");
        if std::fs::read_to_string(&sl).ok().as_deref() != Some(sources.as_str()) {
            std::fs::write(&sl, sources).ctx(|| format!("write {}", sl.display()))?;
            let _ = std::fs::remove_file(root.join("lists/.klpt-updated"));
        }
        let status = root.join("status");
        if !status.exists() {
            std::fs::write(&status, "").ctx(|| format!("write {}", status.display()))?;
        }
        Ok(Apt { root, arch: arch.into(), suite: suite.into() })
    }

    fn opts(&self) -> Vec<String> {
        let r = self.root.display();
        [
            format!("Dir::Etc::SourceList={r}/etc/sources.list"),
            "Dir::Etc::SourceParts=/dev/null".into(),
            "Dir::Etc::Preferences=/dev/null".into(),
            format!("Dir::Etc::PreferencesParts={r}/etc/preferences.d"),
            format!("Dir::State::Lists={r}/lists"),
            format!("Dir::State::status={r}/status"),
            format!("Dir::Cache={r}"),
            format!("Dir::Cache::archives={r}/archives"),
            "Debug::NoLocking=1".into(),
            "APT::Sandbox::User=root".into(),
            format!("APT::Architecture={}", self.arch),
            format!("APT::Architectures::={}", self.arch),
            "Acquire::Retries=3".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(self.opts()).env("LC_ALL", "C");
        c
    }

    /// Refreshes the private lists when older than a day (or absent).
    pub fn update(&self) -> Result<()> {
        let stamp = self.root.join("lists/.klpt-updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() < Duration::from_secs(86400))
            .unwrap_or(false);
        if fresh {
            return Ok(());
        }
        crate::event::stage(&format!("apt: updating {} {} index", self.suite, self.arch), || run(self.cmd("apt-get").arg("update").arg("-q")))?;
        std::fs::write(&stamp, "").ctx(|| "write apt stamp".into())?;
        Ok(())
    }

    /// `Depends:` of a package (first alternative of each).
    pub fn depends(&self, pkg: &str) -> Result<Vec<String>> {
        let out = run(self.cmd("apt-cache").args(["depends", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", pkg]))?;
        Ok(out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: ").or_else(|| l.trim().strip_prefix("|Depends: ")))
            .map(|d| d.trim_start_matches('<').trim_end_matches('>').split(':').next().unwrap_or(d).to_string())
            .collect())
    }

    /// The first dependency of `meta` whose name starts with `prefix`: how a
    /// metapackage (linux-image-amd64) resolves to the real package.
    pub fn resolve(&self, meta: &str, prefix: &str) -> Result<String> {
        self.depends(meta)?
            .into_iter()
            .find(|d| d.starts_with(prefix))
            .ok_or_else(|| Error::Other(format!("{meta} ({} {}) depends on no {prefix}* package", self.suite, self.arch)))
    }

    /// Downloads packages (cached) and returns their .deb paths, in order.
    pub fn download(&self, pkgs: &[String]) -> Result<Vec<PathBuf>> {
        let debs = self.root.join("debs");
        // One apt-cache call for all: stanzas come back in argument order.
        let show = run(self.cmd("apt-cache").args(["show", "--no-all-versions"]).args(pkgs))?;
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for stanza in show.split("\n\n").filter(|s| s.contains("Package: ")) {
            let field = |n: &str| stanza.lines().find_map(|l| l.strip_prefix(n).map(|v| v.trim().to_string())).unwrap_or_default();
            let (name, version, arch) = (field("Package: "), field("Version: "), field("Architecture: "));
            // apt-get download names files name_version_arch.deb, with the epoch's `:` escaped.
            let path = debs.join(format!("{name}_{}_{arch}.deb", version.replace(':', "%3a")));
            if !path.exists() {
                missing.push(name.clone());
            }
            out.push(path);
        }
        if out.len() != pkgs.len() {
            return Err(Error::Other(format!("apt-cache show found {} of {} packages ({}) in {} {}", out.len(), pkgs.len(), pkgs.join(" "), self.suite, self.arch)));
        }
        if !missing.is_empty() {
            let what = format!("apt: downloading {} ({})", missing.join(" "), self.arch);
            crate::event::stage(&what, || run(self.cmd("apt-get").current_dir(&debs).arg("download").arg("-q").args(&missing)))?;
        }
        for p in &out {
            if !p.exists() {
                return Err(Error::Other(format!("apt-get download did not produce {}", p.display())));
            }
        }
        emit(Event::Note { msg: &format!("apt: {} package(s) ready for {}", out.len(), self.arch) });
        Ok(out)
    }
}

/// Unpacks a .deb into `dest` without installing it.
pub fn unpack(deb: &Path, dest: &Path) -> Result<()> {
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_deb822_and_one_line_sources() {
        let d = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\nSigned-By: /k.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(parse_mirror(d), Some(("http://mirror.example/debian".into(), "/k.gpg".into())));
        let l = "deb http://mirror.example/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/x.gpg] http://m.example/debian bookworm main contrib\n";
        assert_eq!(parse_mirror(l), Some(("http://m.example/debian".into(), "/x.gpg".into())));
    }
}
