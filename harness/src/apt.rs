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
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
        };
        if let (Some(uris), Some(comps)) = (field("URIs"), field("Components")) {
            let uri = uris.split_whitespace().next()?.to_string();
            if comps.split_whitespace().any(|c| c == "main")
                && !uri.contains("security")
                && field("Types").is_some_and(|t| t.contains("deb"))
                && uri.contains("debian")
            {
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
        if parts.len() >= 3
            && parts[2..].contains(&"main")
            && !parts[0].contains("security")
            && parts[0].contains("debian")
        {
            return Some((parts[0].to_string(), key));
        }
    }
    None
}

/// The host's Debian release codename (e.g. `bookworm`).
pub fn host_codename() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_else(|| "stable".into())
}

/// A package version apt would install: `apt-get -s` output, or what to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkgVersion {
    pub name: String,
    pub version: String,
    /// Debian architecture, or `all`.
    pub arch: String,
}

/// `apt-cache depends` options that keep only the `Depends:` lines.
const DEPENDS_ONLY: [&str; 6] =
    ["--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"];

impl PkgVersion {
    /// The file name `apt-get download` gives it (the epoch's `:` escaped).
    pub fn deb_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.arch)
    }
}

/// What `apt-get -s install` would do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Simulation {
    pub install: Vec<PkgVersion>,
    /// Installed packages it would remove.
    pub remove: Vec<String>,
}

/// Parses `apt-get -s` output: `Inst NAME [OLD] (NEW RELEASE... [ARCH]) ...`
/// and `Remv NAME [OLD]` lines; everything else is commentary.
pub fn parse_simulation(text: &str) -> Simulation {
    let mut sim = Simulation::default();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("Inst ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            let Some(group) = rest.find('(').and_then(|i| rest[i + 1..].find(')').map(|j| &rest[i + 1..i + 1 + j]))
            else {
                continue;
            };
            let version = group.split_whitespace().next().unwrap_or_default();
            let arch = group.rsplit_once('[').map(|(_, a)| a.trim_end_matches(']')).unwrap_or_default();
            if !name.is_empty() && !version.is_empty() {
                sim.install.push(PkgVersion {
                    name: name.split(':').next().unwrap_or(name).into(),
                    version: version.into(),
                    arch: arch.into(),
                });
            }
        } else if let Some(rest) = l.strip_prefix("Remv ") {
            if let Some(name) = rest.split_whitespace().next() {
                sim.remove.push(name.split(':').next().unwrap_or(name).into());
            }
        }
    }
    sim
}

impl Apt {
    pub fn new(suite: &str, arch: &str) -> Result<Apt> {
        Apt::with_suites(&[suite], arch)
    }

    /// A private apt over several suites of the host's mirror (e.g. a release
    /// and its backports).
    pub fn with_suites(suites: &[&str], arch: &str) -> Result<Apt> {
        let (uri, key) = host_mirror()?;
        let suite = suites.join("+");
        let root = crate::cache::dir(&format!("apt/{suite}-{arch}"));
        for d in ["lists/partial", "archives/partial", "etc/preferences.d", "debs"] {
            std::fs::create_dir_all(root.join(d)).ctx(|| format!("create {}", root.display()))?;
        }
        let sources: String =
            suites.iter().map(|s| format!("deb [arch={arch} signed-by={key}] {uri} {s} main\n")).collect();
        let sl = root.join("etc/sources.list");
        if std::fs::read_to_string(&sl).ok().as_deref() != Some(sources.as_str()) {
            std::fs::write(&sl, sources).ctx(|| format!("write {}", sl.display()))?;
            let _ = std::fs::remove_file(root.join("lists/.klpt-updated"));
        }
        // The host's apt.conf.d still applies (proxies, say), but not its
        // hooks: an update of klpt's lists must not refresh the host's
        // AppStream cache or notify PackageKit.
        let conf = root.join("etc/apt.conf");
        let hooks = "#clear APT::Update::Pre-Invoke;\n#clear APT::Update::Post-Invoke;\n#clear APT::Update::Post-Invoke-Success;\n#clear DPkg::Pre-Invoke;\n#clear DPkg::Post-Invoke;\n#clear DPkg::Pre-Install-Pkgs;\n";
        if std::fs::read_to_string(&conf).ok().as_deref() != Some(hooks) {
            std::fs::write(&conf, hooks).ctx(|| format!("write {}", conf.display()))?;
        }
        let status = root.join("status");
        if !status.exists() {
            std::fs::write(&status, "").ctx(|| format!("write {}", status.display()))?;
        }
        Ok(Apt { root, arch: arch.into(), suite })
    }

    fn opts(&self) -> Vec<String> {
        let r = self.root.display();
        let mut v = vec!["-c".to_string(), format!("{r}/etc/apt.conf")];
        v.extend(
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
            .flat_map(|o| ["-o".to_string(), o]),
        );
        v
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
        crate::event::stage(&format!("apt: updating {} {} index", self.suite, self.arch), || {
            run(self.cmd("apt-get").arg("update").arg("-q"))
        })?;
        std::fs::write(&stamp, "").ctx(|| "write apt stamp".into())?;
        Ok(())
    }

    /// `Depends:` of a package (first alternative of each).
    pub fn depends(&self, pkg: &str) -> Result<Vec<String>> {
        let out = run(self.cmd("apt-cache").arg("depends").args(DEPENDS_ONLY).arg(pkg))?;
        Ok(out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: ").or_else(|| l.trim().strip_prefix("|Depends: ")))
            .map(|d| d.trim_start_matches('<').trim_end_matches('>').split(':').next().unwrap_or(d).to_string())
            .collect())
    }

    /// The first dependency of `meta` whose name starts with `prefix`: how a
    /// metapackage (linux-image-amd64) resolves to the real package.
    pub fn resolve(&self, meta: &str, prefix: &str) -> Result<String> {
        self.depends(meta)?.into_iter().find(|d| d.starts_with(prefix)).ok_or_else(|| {
            Error::Other(format!("{meta} ({} {}) depends on no {prefix}* package", self.suite, self.arch))
        })
    }

    /// What installing `pkgs` (candidates from `release`, everything else
    /// as apt chooses) would do on a system whose dpkg status is `status`,
    /// without recommends. A simulation on a copy of the status file, with
    /// the private lists: nothing is installed, nothing of the host's
    /// changes.
    pub fn simulate_install(&self, pkgs: &[String], release: &str, status: &Path) -> Result<Simulation> {
        let copy = tempfile::NamedTempFile::new().ctx(|| "create a status copy".into())?;
        std::fs::copy(status, copy.path()).ctx(|| format!("copy {}", status.display()))?;
        let out = run(self
            .cmd("apt-get")
            .arg("-o")
            .arg(format!("Dir::State::status={}", copy.path().display()))
            .args(["-s", "-q", "-y", "--no-install-recommends", "-t", release, "install"])
            .args(pkgs))?;
        Ok(parse_simulation(&out))
    }

    /// `Depends:` and `Pre-Depends:` of each package's `release` candidate
    /// (every alternative), by package.
    pub fn depends_map(
        &self,
        pkgs: &[String],
        release: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
        let out = run(self.cmd("apt-cache").args(["-t", release, "depends"]).args(DEPENDS_ONLY).args(pkgs))?;
        Ok(parse_depends(&out))
    }

    /// Downloads exact versions (cached) and returns their .deb paths, in order.
    pub fn download_exact(&self, pkgs: &[PkgVersion]) -> Result<Vec<PathBuf>> {
        let debs = self.root.join("debs");
        let missing: Vec<String> = pkgs
            .iter()
            .filter(|p| !debs.join(p.deb_name()).exists())
            .map(|p| format!("{}={}", p.name, p.version))
            .collect();
        if !missing.is_empty() {
            let what = format!("apt: downloading {} ({})", missing.join(" "), self.arch);
            crate::event::stage(&what, || {
                run(self.cmd("apt-get").current_dir(&debs).arg("download").arg("-q").args(&missing))
            })?;
        }
        let out: Vec<PathBuf> = pkgs.iter().map(|p| debs.join(p.deb_name())).collect();
        if let Some(p) = out.iter().find(|p| !p.exists()) {
            return Err(Error::Other(format!("apt-get download did not produce {}", p.display())));
        }
        Ok(out)
    }

    /// Downloads packages (cached) and returns their .deb paths, in order.
    pub fn download(&self, pkgs: &[String]) -> Result<Vec<PathBuf>> {
        let debs = self.root.join("debs");
        // One apt-cache call for all: stanzas come back in argument order.
        let show = run(self.cmd("apt-cache").args(["show", "--no-all-versions"]).args(pkgs))?;
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for stanza in show.split("\n\n").filter(|s| s.contains("Package: ")) {
            let field = |n: &str| {
                stanza.lines().find_map(|l| l.strip_prefix(n).map(|v| v.trim().to_string())).unwrap_or_default()
            };
            let (name, version, arch) = (field("Package: "), field("Version: "), field("Architecture: "));
            // apt-get download names files name_version_arch.deb, with the epoch's `:` escaped.
            let path = debs.join(format!("{name}_{}_{arch}.deb", version.replace(':', "%3a")));
            if !path.exists() {
                missing.push(name.clone());
            }
            out.push(path);
        }
        if out.len() != pkgs.len() {
            return Err(Error::Other(format!(
                "apt-cache show found {} of {} packages ({}) in {} {}",
                out.len(),
                pkgs.len(),
                pkgs.join(" "),
                self.suite,
                self.arch
            )));
        }
        if !missing.is_empty() {
            let what = format!("apt: downloading {} ({})", missing.join(" "), self.arch);
            crate::event::stage(&what, || {
                run(self.cmd("apt-get").current_dir(&debs).arg("download").arg("-q").args(&missing))
            })?;
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

/// `apt-cache depends` output: package header lines, then indented
/// `Depends:` / `|Depends:` / `PreDepends:` lines (virtual names in `<>`).
fn parse_depends(text: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut map: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut cur: Option<String> = None;
    for l in text.lines() {
        if !l.starts_with(' ') {
            let name = l.trim().split(':').next().unwrap_or_default().to_string();
            cur = (!name.is_empty()).then(|| name.clone());
            if let Some(c) = &cur {
                map.entry(c.clone()).or_default();
            }
            continue;
        }
        let t = l.trim().trim_start_matches('|');
        let Some(dep) = t.strip_prefix("Depends: ").or_else(|| t.strip_prefix("PreDepends: ")) else { continue };
        let dep = dep.trim_start_matches('<').trim_end_matches('>').split(':').next().unwrap_or_default();
        if let (Some(c), false) = (&cur, dep.is_empty()) {
            map.entry(c.clone()).or_default().push(dep.to_string());
        }
    }
    map
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

    #[test]
    fn simulation_lists_installs_and_removals() {
        // `apt-get -s install` on a host with a backports qemu-utils: apt
        // would remove it to install the release's qemu-system-x86.
        let text = "\
Reading package lists...
The following packages will be REMOVED:
  qemu-utils
The following NEW packages will be installed:
  libslirp0 qemu-system-x86 seabios
Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]
Inst libslirp0 (4.7.0-1 Debian:12.15/oldstable [amd64])
Inst qemu-system-common [1:7.2+dfsg-7] (1:10.0.2+ds-2+deb13u1~bpo12+1 Debian Backports:oldstable-backports [amd64]) []
Inst seabios (1.16.3-2~bpo12+1 Debian Backports:oldstable-backports [all])
Conf libslirp0 (4.7.0-1 Debian:12.15/oldstable [amd64])
";
        let sim = parse_simulation(text);
        assert_eq!(sim.remove, vec!["qemu-utils".to_string()]);
        let v = |n: &str, ver: &str, a: &str| PkgVersion { name: n.into(), version: ver.into(), arch: a.into() };
        assert_eq!(
            sim.install,
            vec![
                v("libslirp0", "4.7.0-1", "amd64"),
                v("qemu-system-common", "1:10.0.2+ds-2+deb13u1~bpo12+1", "amd64"),
                v("seabios", "1.16.3-2~bpo12+1", "all")
            ]
        );
        assert_eq!(sim.install[1].deb_name(), "qemu-system-common_1%3a10.0.2+ds-2+deb13u1~bpo12+1_amd64.deb");
        assert_eq!(parse_simulation("Reading package lists...\n"), Simulation::default());
    }

    #[test]
    fn depends_by_package() {
        let text = "qemu-system-x86\n  Depends: libslirp0\n |Depends: <libfoo>\n  Depends: qemu-system-common\nseabios\nqemu-system-common\n  PreDepends: libc6:any\n";
        let m = parse_depends(text);
        assert_eq!(m["qemu-system-x86"], vec!["libslirp0", "libfoo", "qemu-system-common"]);
        assert!(m["seabios"].is_empty());
        assert_eq!(m["qemu-system-common"], vec!["libc6"]);
    }
}
