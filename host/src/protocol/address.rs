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
