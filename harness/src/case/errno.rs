//! Errno names a case may write (`errno:`), with their numbers and the C
//! library's messages for them: the case layer checks the names, and
//! `steps::errno` recovers a name from a guest tool's `strerror()` text.

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

/// Each errno's name and its `strerror()` text.
pub fn messages() -> impl Iterator<Item = (&'static str, &'static str)> {
    TABLE.iter().map(|(n, _, m)| (*n, *m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_name_known_errnos() {
        assert!(same("EWOULDBLOCK", "EAGAIN"));
        assert!(is_known("EWOULDBLOCK") && !is_known("EFOO"));
        assert!(ALIASES.iter().all(|(_, c)| is_known(c)));
    }
}
