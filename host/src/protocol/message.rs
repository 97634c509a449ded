//! The messages of the protocol as plain Rust values, and their Cap'n Proto encoding.
//!
//! This is the only module that touches the generated code: everything else speaks [`Message`].

use std::cell::RefCell;

use capnp::message::{Builder, ReaderOptions, ScratchSpaceHeapAllocator};
use ebbtide_sdk::CapMap;

use super::ProtocolError;
use super::ebbtide_capnp as wire;

/// The first segment of the messages a thread encodes: 64 words hold a task, a result or a
/// heartbeat; a larger message continues in heap segments. Capnp needs it zeroed and 8-byte aligned;
/// zeroing 512 bytes is cheaper than allocating and zeroing a segment per message.
#[repr(align(8))]
struct Scratch([u8; 512]);

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch([0; 512])) };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Worker,
    Adapter,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Worker => "worker",
            Role::Adapter => "adapter",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub role: Role,
    pub protocol_version: u32,
    pub identity: String,
    pub token: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: u64,
    pub function: String,
    pub payload: Vec<u8>,
    pub capabilities: CapMap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    Done,
    Failed,
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskResult {
    pub id: u64,
    pub status: TaskStatus,
    pub output: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkerHeartbeat {
    pub capabilities: CapMap,
    /// `None`: a worker started by hand, part of an unmanaged group.
    pub group: Option<u64>,
    pub assigned: Vec<u64>,
    /// Named gauges reported by the worker: its latest value of each.
    pub gauges: Vec<(String, f64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterHeartbeat {
    pub max_worker_groups: u32,
    pub workers_per_group: u32,
    /// `None`: the adapter can provide any capability set.
    pub capabilities: Option<CapMap>,
    pub priority: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdapterCommand {
    Start { request_id: u64, group_id: u64, capabilities: CapMap },
    Shutdown { group_id: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandResponse {
    pub request_id: u64,
    pub ok: bool,
    pub group_id: u64,
    pub worker_ids: Vec<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Hello(Hello),
    Welcome { peer_id: u64 },
    TaskSubmit(Task),
    TaskResult(TaskResult),
    TaskCancel(u64),
    WorkerHeartbeat(WorkerHeartbeat),
    AdapterHeartbeat(AdapterHeartbeat),
    AdapterCommand(AdapterCommand),
    CommandResponse(CommandResponse),
    GroupLost { group_id: u64, reason: String },
    Goodbye(String),
}

impl Message {
    /// The message's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome { .. } => "welcome",
            Message::TaskSubmit(_) => "task submit",
            Message::TaskResult(_) => "task result",
            Message::TaskCancel(_) => "task cancel",
            Message::WorkerHeartbeat(_) => "worker heartbeat",
            Message::AdapterHeartbeat(_) => "adapter heartbeat",
            Message::AdapterCommand(_) => "adapter command",
            Message::CommandResponse(_) => "command response",
            Message::GroupLost { .. } => "group lost",
            Message::Goodbye(_) => "goodbye",
        }
    }

    /// One frame, ready to write.
    pub fn encode(&self) -> Vec<u8> {
        let mut frame = Vec::new();
        self.encode_into(&mut frame);
        frame
    }

    /// Appends one frame to `out`. Small messages are built in a per-thread scratch segment, so
    /// encoding allocates nothing beyond `out`'s own growth.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut builder = Builder::new(ScratchSpaceHeapAllocator::new(&mut scratch.0));
            build(self, builder.init_root());
            capnp::serialize::write_message(out, &builder).expect("writing to a Vec cannot fail");
        })
    }

    /// Decodes one frame as read by [`read_frame`](super::framing::read_frame).
    pub fn decode(frame: &[u8]) -> Result<Message, ProtocolError> {
        // Reading costs at most a few times the frame's own size: a tiny frame that points many
        // times at the same data (an amplification attack) is refused, not traversed for milliseconds.
        let mut options = ReaderOptions::new();
        options.traversal_limit_in_words(Some((frame.len() / 8 * 4).max(1024))).nesting_limit(16);
        let reader = capnp::serialize::read_message_from_flat_slice(&mut &frame[..], options)?;
        decode_from(reader.get_root()?)
    }
}

fn set_caps(mut list: capnp::struct_list::Builder<'_, wire::capability::Owned>, caps: &CapMap) {
    for (i, (name, value)) in caps.iter().enumerate() {
        let mut c = list.reborrow().get(i as u32);
        c.set_name(name.as_str());
        c.set_value(*value);
    }
}

fn caps_len(caps: &CapMap) -> u32 {
    caps.len() as u32
}

fn build(message: &Message, mut root: wire::message::Builder<'_>) {
    match message {
        Message::Hello(h) => {
            let mut b = root.init_hello();
            b.set_role(match h.role {
                Role::Client => wire::Role::Client,
                Role::Worker => wire::Role::Worker,
                Role::Adapter => wire::Role::Adapter,
            });
            b.set_protocol_version(h.protocol_version);
            b.set_identity(h.identity.as_str());
            b.set_token(h.token.as_str());
        }
        Message::Welcome { peer_id } => root.init_welcome().set_peer_id(*peer_id),
        Message::TaskSubmit(t) => {
            let mut b = root.init_task_submit();
            b.set_id(t.id);
            b.set_function(t.function.as_str());
            b.set_payload(&t.payload);
            set_caps(b.init_capabilities(caps_len(&t.capabilities)), &t.capabilities);
        }
        Message::TaskResult(r) => {
            let mut b = root.init_task_result();
            b.set_id(r.id);
            b.set_status(match r.status {
                TaskStatus::Done => wire::TaskStatus::Done,
                TaskStatus::Failed => wire::TaskStatus::Failed,
                TaskStatus::Cancelled => wire::TaskStatus::Cancelled,
            });
            b.set_output(&r.output);
        }
        Message::TaskCancel(id) => root.set_task_cancel(*id),
        Message::WorkerHeartbeat(h) => {
            let mut b = root.init_worker_heartbeat();
            b.set_group(h.group.unwrap_or(0));
            set_caps(b.reborrow().init_capabilities(caps_len(&h.capabilities)), &h.capabilities);
            let mut assigned = b.reborrow().init_assigned(h.assigned.len() as u32);
            for (i, id) in h.assigned.iter().enumerate() {
                assigned.set(i as u32, *id);
            }
            let mut gauges = b.init_gauges(h.gauges.len() as u32);
            for (i, (name, value)) in h.gauges.iter().enumerate() {
                let mut g = gauges.reborrow().get(i as u32);
                g.set_name(name);
                g.set_value(*value);
            }
        }
        Message::AdapterHeartbeat(h) => {
            let mut b = root.init_adapter_heartbeat();
            b.set_max_worker_groups(h.max_worker_groups);
            b.set_workers_per_group(h.workers_per_group);
            b.set_any_capabilities(h.capabilities.is_none());
            b.set_priority(h.priority);
            let caps = h.capabilities.clone().unwrap_or_default();
            set_caps(b.init_capabilities(caps_len(&caps)), &caps);
        }
        Message::AdapterCommand(AdapterCommand::Start { request_id, group_id, capabilities }) => {
            let mut b = root.init_adapter_command().init_start();
            b.set_request_id(*request_id);
            b.set_group_id(*group_id);
            set_caps(b.init_capabilities(caps_len(capabilities)), capabilities);
        }
        Message::AdapterCommand(AdapterCommand::Shutdown { group_id }) => {
            root.init_adapter_command().set_shutdown(*group_id)
        }
        Message::CommandResponse(r) => {
            let mut b = root.init_command_response();
            b.set_request_id(r.request_id);
            b.set_status(if r.ok { wire::CommandStatus::Ok } else { wire::CommandStatus::Failed });
            b.set_group_id(r.group_id);
            b.set_message(r.message.as_str());
            let mut ids = b.init_worker_ids(r.worker_ids.len() as u32);
            for (i, id) in r.worker_ids.iter().enumerate() {
                ids.set(i as u32, id.as_str());
            }
        }
        Message::GroupLost { group_id, reason } => {
            let mut b = root.init_group_lost();
            b.set_group_id(*group_id);
            b.set_reason(reason.as_str());
        }
        Message::Goodbye(reason) => root.set_goodbye(reason.as_str()),
    }
}

fn text(r: capnp::Result<capnp::text::Reader<'_>>) -> Result<String, ProtocolError> {
    Ok(r?.to_str()?.to_owned())
}

fn caps(list: capnp::struct_list::Reader<'_, wire::capability::Owned>) -> Result<CapMap, ProtocolError> {
    list.iter().map(|c| Ok((text(c.get_name())?, c.get_value()))).collect()
}

fn decode_from(root: wire::message::Reader<'_>) -> Result<Message, ProtocolError> {
    use wire::message::Which;
    Ok(match root.which()? {
        Which::Hello(h) => {
            let h = h?;
            Message::Hello(Hello {
                role: match h.get_role()? {
                    wire::Role::Client => Role::Client,
                    wire::Role::Worker => Role::Worker,
                    wire::Role::Adapter => Role::Adapter,
                },
                protocol_version: h.get_protocol_version(),
                identity: text(h.get_identity())?,
                token: text(h.get_token())?,
            })
        }
        Which::Welcome(w) => Message::Welcome { peer_id: w?.get_peer_id() },
        Which::TaskSubmit(t) => {
            let t = t?;
            Message::TaskSubmit(Task {
                id: t.get_id(),
                function: text(t.get_function())?,
                payload: t.get_payload()?.to_vec(),
                capabilities: caps(t.get_capabilities()?)?,
            })
        }
        Which::TaskResult(r) => {
            let r = r?;
            Message::TaskResult(TaskResult {
                id: r.get_id(),
                status: match r.get_status()? {
                    wire::TaskStatus::Done => TaskStatus::Done,
                    wire::TaskStatus::Failed => TaskStatus::Failed,
                    wire::TaskStatus::Cancelled => TaskStatus::Cancelled,
                },
                output: r.get_output()?.to_vec(),
            })
        }
        Which::TaskCancel(id) => Message::TaskCancel(id),
        Which::WorkerHeartbeat(h) => {
            let h = h?;
            Message::WorkerHeartbeat(WorkerHeartbeat {
                capabilities: caps(h.get_capabilities()?)?,
                group: Some(h.get_group()).filter(|g| *g != 0),
                assigned: h.get_assigned()?.iter().collect(),
                gauges: h
                    .get_gauges()?
                    .iter()
                    .map(|g| Ok((text(g.get_name())?, g.get_value())))
                    .collect::<Result<_, ProtocolError>>()?,
            })
        }
        Which::AdapterHeartbeat(h) => {
            let h = h?;
            let offered = caps(h.get_capabilities()?)?;
            Message::AdapterHeartbeat(AdapterHeartbeat {
                max_worker_groups: h.get_max_worker_groups(),
                workers_per_group: h.get_workers_per_group(),
                capabilities: if h.get_any_capabilities() { None } else { Some(offered) },
                priority: h.get_priority(),
            })
        }
        Which::AdapterCommand(c) => {
            use wire::adapter_command::Which as C;
            Message::AdapterCommand(match c?.which()? {
                C::Start(s) => {
                    let s = s?;
                    AdapterCommand::Start {
                        request_id: s.get_request_id(),
                        group_id: s.get_group_id(),
                        capabilities: caps(s.get_capabilities()?)?,
                    }
                }
                C::Shutdown(group_id) => AdapterCommand::Shutdown { group_id },
            })
        }
        Which::CommandResponse(r) => {
            let r = r?;
            Message::CommandResponse(CommandResponse {
                request_id: r.get_request_id(),
                ok: r.get_status()? == wire::CommandStatus::Ok,
                group_id: r.get_group_id(),
                worker_ids: r.get_worker_ids()?.iter().map(text).collect::<Result<_, _>>()?,
                message: text(r.get_message())?,
            })
        }
        Which::GroupLost(g) => {
            let g = g?;
            Message::GroupLost { group_id: g.get_group_id(), reason: text(g.get_reason())? }
        }
        Which::Goodbye(t) => Message::Goodbye(text(t)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: Message) {
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn every_message_roundtrips() {
        let caps: CapMap = [("gpu".to_owned(), 1), ("linux".to_owned(), -1)].into();
        roundtrip(Message::Hello(Hello {
            role: Role::Adapter,
            protocol_version: 1,
            identity: "a".into(),
            token: "t".into(),
        }));
        roundtrip(Message::Welcome { peer_id: 7 });
        roundtrip(Message::TaskSubmit(Task {
            id: 1,
            function: "echo".into(),
            payload: b"hi".to_vec(),
            capabilities: caps.clone(),
        }));
        roundtrip(Message::TaskResult(TaskResult { id: 1, status: TaskStatus::Failed, output: b"x".to_vec() }));
        roundtrip(Message::TaskCancel(9));
        roundtrip(Message::WorkerHeartbeat(WorkerHeartbeat {
            capabilities: caps.clone(),
            group: Some(3),
            assigned: vec![1, 2],
            gauges: vec![("kv_cache".into(), 0.5), ("ttft_ms".into(), 120.0)],
        }));
        roundtrip(Message::WorkerHeartbeat(WorkerHeartbeat {
            capabilities: CapMap::new(),
            group: None,
            assigned: vec![],
            gauges: vec![],
        }));
        roundtrip(Message::AdapterHeartbeat(AdapterHeartbeat {
            max_worker_groups: 8,
            workers_per_group: 2,
            capabilities: None,
            priority: -1,
        }));
        roundtrip(Message::AdapterHeartbeat(AdapterHeartbeat {
            max_worker_groups: 0,
            workers_per_group: 1,
            capabilities: Some(caps.clone()),
            priority: 0,
        }));
        roundtrip(Message::AdapterCommand(AdapterCommand::Start { request_id: 4, group_id: 4, capabilities: caps }));
        roundtrip(Message::AdapterCommand(AdapterCommand::Shutdown { group_id: 4 }));
        roundtrip(Message::CommandResponse(CommandResponse {
            request_id: 4,
            ok: true,
            group_id: 4,
            worker_ids: vec!["11".into()],
            message: String::new(),
        }));
        roundtrip(Message::GroupLost { group_id: 4, reason: "exited".into() });
        roundtrip(Message::Goodbye("bye".into()));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\0\0\0\0",
            b"\0\0\0\0\x01\0\0\0",
            b"\xff\xff\xff\xff",
            b"\0\0\0\0\x02\0\0\0\x07\0\0\0\0\0\0\0\0\0\0\0",
        ] {
            assert!(Message::decode(bytes).is_err(), "{bytes:?}");
        }
    }
}
