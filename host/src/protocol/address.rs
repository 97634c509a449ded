//! Addresses as operators write them: `tcp://HOST:PORT`, as in Scaler.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    /// `HOST:PORT`, what sockets take.
    pub fn socket(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn is_loopback(&self) -> bool {
        matches!(self.host.as_str(), "127.0.0.1" | "localhost" | "::1") || self.host.starts_with("127.")
    }
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            |why: &str| format!("invalid address {s:?}: {why}; expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:8516");
        let rest = s.strip_prefix("tcp://").ok_or_else(|| bad("it does not start with tcp://"))?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = port.parse().map_err(|_| bad("the port is not a number from 0 to 65535"))?;
        Ok(Address { host: host.to_owned(), port })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp://{}", self.socket())
    }
}

/// Why a listening address could not be bound, naming the setting that chooses it.
pub fn bind_error(e: &std::io::Error, setting: &str) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "the port is in use (by another scheduler, or another program): stop it, or choose another port with \
             {setting}; port 0 picks a free one"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            format!("{e}: this machine has no such address; choose one of its own with {setting}")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("{e}: ports below 1024 need privileges; choose another with {setting}")
        }
        _ => format!("{e}; the address comes from {setting}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_what_is_wrong() {
        let a: Address = "tcp://127.0.0.1:8516".parse().unwrap();
        assert_eq!(a.socket(), "127.0.0.1:8516");
        assert!(a.is_loopback());
        assert!("127.0.0.1:8516".parse::<Address>().unwrap_err().contains("tcp://"));
        assert!("tcp://host:99999".parse::<Address>().unwrap_err().contains("port"));
        assert_eq!("tcp://[::1]:1".parse::<Address>().unwrap().socket(), "[::1]:1");
    }
}
