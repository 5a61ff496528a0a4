//! Path and context validation for the node: staging and target paths must
//! be absolute, normalised and inside the kubelet directory; server, share
//! and mount options must be safe to hand to `mount`.

use std::path::{Component, Path, PathBuf};

/// Checks a path from a request. `Err` says what is wrong with it.
pub fn check_path(what: &str, path: &str, kubelet_dir: &Path) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err(format!("{what} is required"));
    }
    if path.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    if !path.starts_with('/') {
        return Err(format!("{what} {path:?} must be an absolute path"));
    }
    if path.len() > 1 && path.ends_with('/') || path.contains("//") {
        return Err(format!("{what} {path:?} is not normalised"));
    }
    let p = Path::new(path);
    for c in p.components() {
        match c {
            Component::RootDir | Component::Normal(_) => {}
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("{what} {path:?} must not contain '.' or '..'"));
            }
        }
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(format!("{what} {path:?} must not contain '.' or '..'"));
    }
    if !p.starts_with(kubelet_dir) || p == kubelet_dir {
        return Err(format!(
            "{what} {path:?} is outside the kubelet directory {}",
            kubelet_dir.display()
        ));
    }
    Ok(p.to_path_buf())
}

/// A host name or IP address for `server:/share`.
pub fn check_server(server: &str) -> Result<(), String> {
    crate::config::validate_host("server", server).map_err(|e| e.problem)
}

/// An export path: `/` plus a FlashBlade file-system name.
pub fn check_share(share: &str) -> Result<String, String> {
    let name = share
        .strip_prefix('/')
        .ok_or_else(|| format!("share {share:?} must be /<file-system name>"))?;
    if !crate::controller::ids::valid_fs_name(name) {
        return Err(format!("share {share:?} must be /<file-system name>"));
    }
    Ok(name.to_string())
}

/// Mount options refused because the driver decides them or they would
/// change what is mounted.
const RESERVED_OPTIONS: &[&str] = &["bind", "rbind", "move", "remount", "loop"];

/// Splits and checks mount flags from a volume capability: each option is
/// `name` or `name=value` of safe characters, so nothing can smuggle another
/// option or a path.
pub fn check_mount_flags(flags: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for flag in flags {
        for opt in flag.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let ok = !opt.starts_with('-')
                && opt.len() <= 128
                && opt
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'=' | b':' | b'-'));
            if !ok {
                return Err(format!("mount option {opt:?} is not allowed"));
            }
            let name = opt.split('=').next().unwrap_or(opt);
            if RESERVED_OPTIONS.contains(&name) {
                return Err(format!("mount option {opt:?} is reserved for the driver"));
            }
            out.push(opt.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "/var/lib/kubelet";

    #[test]
    fn paths() {
        let k = Path::new(K);
        check_path(
            "p",
            "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/pvc/mount",
            k,
        )
        .unwrap();
        for bad in [
            "",
            "relative/path",
            "some/path",
            "/var/lib/kubelet/../../etc",
            "/var/lib/kubelet/pods/./x",
            "/var/lib/kubelet//pods",
            "/var/lib/kubelet/pods/",
            "/etc/passwd",
            "/var/lib/kubelet",
            "/var/lib/kubeletx/pods",
            "/var/lib/kubelet/pods/\0x",
        ] {
            assert!(check_path("p", bad, k).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn servers_and_shares() {
        check_server("10.21.0.10").unwrap();
        check_server("fb01-data.example.com").unwrap();
        check_server("fd00::10").unwrap();
        for bad in ["", "-oexec", "a b", "host:/x", "a,b", "$(reboot)"] {
            assert!(check_server(bad).is_err(), "{bad}");
        }
        assert_eq!(check_share("/k8s-pvc-1").unwrap(), "k8s-pvc-1");
        for bad in ["k8s", "/", "/a/b", "/../etc", "/-o", "/a b", "/a,ro"] {
            assert!(check_share(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_flags() {
        assert_eq!(
            check_mount_flags(&["nconnect=8".into(), "hard,noatime".into()]).unwrap(),
            vec!["nconnect=8", "hard", "noatime"]
        );
        for bad in ["-o", "a b", "x;y", "bind", "remount", "rw/../", "a\"b"] {
            assert!(check_mount_flags(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
