//! The hello that opens every connection: role, protocol version, identity and token.

use super::{PeerId, Scheduler};
use crate::protocol::{Hello, Message, PROTOCOL_VERSION};

impl Scheduler {
    pub(super) fn on_hello(&mut self, peer: PeerId, message: Message) {
        let Message::Hello(hello) = message else {
            self.counters.protocol_errors += 1;
            return self.close(peer, format!("expected a hello first, got a {} message", message.kind()));
        };
        if let Err(reason) = self.check_hello(&hello) {
            self.counters.protocol_errors += 1;
            if let Some(p) = self.peers.get_mut(&peer) {
                p.identity = hello.identity.chars().take(128).collect();
            }
            return self.close(peer, reason);
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.role = Some(hello.role);
            p.identity = hello.identity.clone();
        }
        tracing::debug!(peer, role = hello.role.as_str(), identity = %hello.identity, "peer joined");
        self.send(peer, Message::Welcome { peer_id: peer });
    }

    fn check_hello(&self, hello: &Hello) -> Result<(), String> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} is not supported; this scheduler speaks version {PROTOCOL_VERSION}",
                hello.protocol_version
            ));
        }
        if let Some(token) = self.config.tokens.for_role(hello.role)
            && !constant_time_eq(token.as_bytes(), hello.token.as_bytes())
        {
            return Err(format!(
                "the hello carries a wrong or missing token for a {} (set by {}_token, or token)",
                hello.role.as_str(),
                hello.role.as_str()
            ));
        }
        if hello.identity.len() > 128 || hello.identity.chars().any(char::is_control) {
            return Err("the identity must be at most 128 printable characters".into());
        }
        Ok(())
    }
}

/// Compares secrets without leaking where they differ through timing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
