//! Errno names and the C library's messages for them. The guest's tools
//! report failures as `strerror()` text, so an errno is recovered by matching
//! that text; kmod's insmod words four errnos its own way (see [`KMOD`]).

/// (name, number, glibc strerror text)
const TABLE: &[(&str, i32, &str)] = &[
    ("EPERM", 1, "Operation not permitted"),
    ("ENOENT", 2, "No such file or directory"),
    ("ESRCH", 3, "No such process"),
    ("EINTR", 4, "Interrupted system call"),
    ("EIO", 5, "Input/output error"),
    ("ENXIO", 6, "No such device or address"),
    ("E2BIG", 7, "Argument list too long"),
    ("ENOEXEC", 8, "Exec format error"),
    ("EBADF", 9, "Bad file descriptor"),
    ("EAGAIN", 11, "Resource temporarily unavailable"),
    ("ENOMEM", 12, "Cannot allocate memory"),
    ("EACCES", 13, "Permission denied"),
    ("EFAULT", 14, "Bad address"),
    ("EBUSY", 16, "Device or resource busy"),
    ("EEXIST", 17, "File exists"),
    ("ENODEV", 19, "No such device"),
    ("ENOTDIR", 20, "Not a directory"),
    ("EISDIR", 21, "Is a directory"),
    ("EINVAL", 22, "Invalid argument"),
    ("ENOSPC", 28, "No space left on device"),
    ("EROFS", 30, "Read-only file system"),
    ("ERANGE", 34, "Numerical result out of range"),
    ("ENOSYS", 38, "Function not implemented"),
    ("ENOKEY", 126, "Required key not available"),
    ("EKEYREJECTED", 129, "Key was rejected by service"),
    ("ENOTSUP", 95, "Operation not supported"),
    ("ETIMEDOUT", 110, "Connection timed out"),
];

/// Aliases that name the same number.
const ALIASES: &[(&str, &str)] = &[("EWOULDBLOCK", "EAGAIN"), ("EOPNOTSUPP", "ENOTSUP")];

fn canonical(name: &str) -> &str {
    ALIASES.iter().find(|(a, _)| *a == name).map(|(_, c)| *c).unwrap_or(name)
}

pub fn is_known(name: &str) -> bool {
    let n = canonical(name);
    TABLE.iter().any(|(t, ..)| *t == n)
}

pub fn known_names() -> Vec<&'static str> {
    TABLE.iter().map(|(n, ..)| *n).collect()
}

/// Two names for the same errno compare equal (`EWOULDBLOCK` == `EAGAIN`).
pub fn same(a: &str, b: &str) -> bool {
    canonical(a) == canonical(b)
}

/// Busybox's own wording for some errors (ash's redirections), and kmod
/// insmod's for the errnos it does not report as `strerror()` text.
const BUSYBOX: &[(&str, &str)] = &[
    ("nonexistent directory", "ENOENT"),
    ("Invalid parameters", "EINVAL"),
    ("Unknown symbol in module", "ENOENT"),
    ("Invalid module format", "ENOEXEC"),
    ("Module has wrong symbol version", "ESRCH"),
];

/// kmod's insmod (`tools/insmod.c`, `mod_strerror`): "ERROR: could not
/// insert module X: <text>", with these texts instead of `strerror()` for
/// the errnos the module loader gives a module-specific meaning.
const KMOD: &[(&str, &str)] = &[
    ("Invalid module format", "ENOEXEC"),
    ("Unknown symbol in module", "ENOENT"),
    ("Module has wrong symbol version", "ESRCH"),
    ("Invalid parameters", "EINVAL"),
];

/// The errno whose message appears in a tool's error output, if any.
pub fn from_message(text: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|(_, _, msg)| text.contains(msg))
        .map(|(n, ..)| *n)
        .or_else(|| KMOD.iter().chain(BUSYBOX).find(|(m, _)| text.contains(m)).map(|(_, n)| *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_errno_from_busybox_messages() {
        assert_eq!(from_message("insmod: can't insert 'x.ko': Invalid argument"), Some("EINVAL"));
        assert_eq!(from_message("sh: write error: Device or resource busy"), Some("EBUSY"));
        assert_eq!(from_message("rmmod: can't unload module 'x': Resource temporarily unavailable"), Some("EAGAIN"));
        assert_eq!(from_message("sh: can't create /sys/x: nonexistent directory"), Some("ENOENT"));
        assert_eq!(from_message("insmod: ERROR: could not insert module /root/x.ko: Invalid parameters"), Some("EINVAL"));
        assert_eq!(from_message("insmod: ERROR: could not insert module /root/x.ko: No such device"), Some("ENODEV"));
        assert_eq!(from_message("all fine"), None);
        assert!(same("EWOULDBLOCK", "EAGAIN"));
        assert!(is_known("EWOULDBLOCK") && !is_known("EFOO"));
    }

    #[test]
    fn recovers_errno_from_kmod_insmod_messages() {
        let kmod = |what: &str| format!("insmod: ERROR: could not insert module /root/x.ko: {what}\n");
        assert_eq!(from_message(&kmod("Invalid parameters")), Some("EINVAL"));
        assert_eq!(from_message(&kmod("Unknown symbol in module")), Some("ENOENT"));
        assert_eq!(from_message(&kmod("Invalid module format")), Some("ENOEXEC"));
        assert_eq!(from_message(&kmod("Module has wrong symbol version")), Some("ESRCH"));
        // Every other errno is strerror() text, as with busybox.
        assert_eq!(from_message(&kmod("File exists")), Some("EEXIST"));
        assert_eq!(from_message(&kmod("Device or resource busy")), Some("EBUSY"));
        assert_eq!(from_message(&kmod("Operation not permitted")), Some("EPERM"));
        assert_eq!(from_message("insmod: ERROR: could not load module /root/y.ko: No such file or directory"), Some("ENOENT"));
        // Every kmod wording names a known errno.
        assert!(KMOD.iter().all(|(_, n)| is_known(n)));
    }
}
