//! An errno recovered from a guest tool's error output. The tools report
//! failures as `strerror()` text (the case layer's errno table), so an errno
//! is recovered by matching that text; kmod's insmod words four errnos its
//! own way (see [`KMOD`]).

use crate::case::errno::messages;

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
    messages()
        .find(|(_, msg)| text.contains(msg))
        .map(|(n, _)| n)
        .or_else(|| KMOD.iter().chain(BUSYBOX).find(|(m, _)| text.contains(m)).map(|(_, n)| *n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::errno::is_known;

    #[test]
    fn recovers_errno_from_busybox_messages() {
        assert_eq!(from_message("insmod: can't insert 'x.ko': Invalid argument"), Some("EINVAL"));
        assert_eq!(from_message("sh: write error: Device or resource busy"), Some("EBUSY"));
        assert_eq!(from_message("rmmod: can't unload module 'x': Resource temporarily unavailable"), Some("EAGAIN"));
        assert_eq!(from_message("sh: can't create /sys/x: nonexistent directory"), Some("ENOENT"));
        assert_eq!(
            from_message("insmod: ERROR: could not insert module /root/x.ko: Invalid parameters"),
            Some("EINVAL")
        );
        assert_eq!(from_message("insmod: ERROR: could not insert module /root/x.ko: No such device"), Some("ENODEV"));
        assert_eq!(from_message("all fine"), None);
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
        assert_eq!(
            from_message("insmod: ERROR: could not load module /root/y.ko: No such file or directory"),
            Some("ENOENT")
        );
        // Every kmod wording names a known errno.
        assert!(KMOD.iter().all(|(_, n)| is_known(n)));
    }
}
