# The wire protocol between the ebbtide scheduler and its clients, workers and adapters.
#
# One TCP connection per peer, standard Cap'n Proto framing, one `Message` per frame. Every connection
# opens with a `hello` from the peer; the scheduler answers `welcome` or closes the connection with a
# logged reason. Bump `protocolVersion` (host/src/protocol/mod.rs) on any incompatible change.
#
# After editing this file, regenerate the committed Rust code (host/src/protocol/ebbtide_capnp.rs):
#   EBBTIDE_REGENERATE=1 cargo test --release -p ebbtide --test protocol_schema
@0xe35cb6ecbe1039a5;

enum Role {
  client @0;
  worker @1;
  adapter @2;
}

struct Hello {
  role @0 :Role;
  protocolVersion @1 :UInt32;
  # A name for logs; adapters use it as their adapter id, which must be unique.
  identity @2 :Text;
  # The scheduler's shared token, or empty when it requires none.
  token @3 :Text;
}

struct Welcome {
  # The id the scheduler gave this connection (for workers: the worker id).
  peerId @0 :UInt64;
}

# One capability: `value` -1 means "present, no quantity".
struct Capability {
  name @0 :Text;
  value @1 :Int64;
}

# A task, from a client to the scheduler (`id` chosen by the client) and from the scheduler to a worker
# (`id` chosen by the scheduler).
struct Task {
  id @0 :UInt64;
  function @1 :Text;
  payload @2 :Data;
  capabilities @3 :List(Capability);
}

enum TaskStatus {
  done @0;
  failed @1;
  cancelled @2;
}

# A task's outcome, from a worker to the scheduler and from the scheduler to the submitting client.
struct TaskResult {
  id @0 :UInt64;
  status @1 :TaskStatus;
  output @2 :Data;
}

struct WorkerHeartbeat {
  capabilities @0 :List(Capability);
  # The adapter-managed group this worker belongs to; 0 for a worker started by hand (unmanaged).
  group @1 :UInt64;
  # The tasks the worker holds right now.
  assigned @2 :List(UInt64);
  # Named gauges the worker reports (its latest value of each); the scheduler keeps the latest per
  # worker and gives the policy each group's mean in `snapshot.metrics`.
  gauges @3 :List(Gauge);
}

struct Gauge {
  name @0 :Text;
  value @1 :Float64;
}

struct AdapterHeartbeat {
  maxWorkerGroups @0 :UInt32;
  workersPerGroup @1 :UInt32;
  # Meaningful only when `anyCapabilities` is false.
  capabilities @2 :List(Capability);
  # True when the adapter can provide any capability set.
  anyCapabilities @3 :Bool;
  priority @4 :Int32;
}

struct StartGroup {
  requestId @0 :UInt64;
  # Assigned by the scheduler; the adapter passes it to its workers.
  groupId @1 :UInt64;
  capabilities @2 :List(Capability);
}

struct AdapterCommand {
  union {
    start @0 :StartGroup;
    shutdown @1 :UInt64;
  }
}

enum CommandStatus {
  ok @0;
  failed @1;
}

struct CommandResponse {
  requestId @0 :UInt64;
  status @1 :CommandStatus;
  groupId @2 :UInt64;
  workerIds @3 :List(Text);
  message @4 :Text;
}

# An adapter saw every process of a group exit.
struct GroupLost {
  groupId @0 :UInt64;
  reason @1 :Text;
}

struct Message {
  union {
    hello @0 :Hello;
    welcome @1 :Welcome;
    taskSubmit @2 :Task;
    taskResult @3 :TaskResult;
    taskCancel @4 :UInt64;
    workerHeartbeat @5 :WorkerHeartbeat;
    adapterHeartbeat @6 :AdapterHeartbeat;
    adapterCommand @7 :AdapterCommand;
    commandResponse @8 :CommandResponse;
    groupLost @9 :GroupLost;
    # The scheduler is closing this connection; the text says why.
    goodbye @10 :Text;
  }
}
