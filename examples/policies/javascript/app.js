// queue_depth: enough workers for `target_tasks_per_worker` unfinished tasks each, scaling down one
// idle group at a time once `cooldown_ms` has passed since the last start.
//
// The same policy is written in Rust, Python and C beside this folder. Built against ../../../wit
// (see build.sh). WIT u64 values (times, group ids) are BigInts in componentize-js and may be
// Numbers in componentize-qjs: they go through BigInt() before any arithmetic.

const PARAMS = {
  // name: [kind shown to users, default, doc]
  target_tasks_per_worker: ["a number > 0", 4, "unfinished tasks each worker should have"],
  cooldown_ms: ["an integer >= 0", 30000, "no scale-down this soon after a start"],
  max_starts_per_tick: ["an integer >= 0", 4, "groups started per decision at most; 0 = unlimited"],
};

const STATE_PREFIX = "queue_depth/1:";

// The params with defaults filled in, and a list of errors naming each bad key.
function parseParams(text) {
  let given;
  try {
    given = text.trim() ? JSON.parse(text) : {};
  } catch (e) {
    return [null, [`params are not JSON: ${e.message}`]];
  }
  if (given === null || typeof given !== "object" || Array.isArray(given)) {
    return [null, [`params must be a JSON object, got ${text}`]];
  }
  const errors = [];
  const params = Object.fromEntries(Object.entries(PARAMS).map(([name, spec]) => [name, spec[1]]));
  for (const [name, value] of Object.entries(given)) {
    if (!(name in PARAMS)) {
      errors.push(`${name}: unknown param; accepted: ${Object.keys(PARAMS).join(", ")}`);
      continue;
    }
    const ok = name === "target_tasks_per_worker"
      ? typeof value === "number" && value > 0
      : Number.isInteger(value) && value >= 0;
    if (ok) params[name] = value;
    else errors.push(`${name}: expected ${PARAMS[name][0]}, got ${JSON.stringify(value)}`);
  }
  return [params, errors];
}

export const policy = {
  describe() {
    return {
      name: "queue_depth",
      version: "0.1.0",
      summary: "Workers for a target number of unfinished tasks each, with a scale-down cooldown.",
      params: Object.entries(PARAMS).map(([name, [kind, def, doc]]) => ({ name, kind, default: JSON.stringify(def), doc })),
    };
  },

  validate(params) {
    const [, errors] = parseParams(params);
    if (errors.length > 0) throw errors;
  },

  decide(params, snapshot, state) {
    const [p, errors] = parseParams(params);
    if (errors.length > 0) throw errors.join("; ");
    return decide(p, snapshot, state);
  },
};

function decide(p, s, state) {
  const adapters = new Map(s.adapters.map((a) => [a.id, a]));
  const wpg = (g) => (g.adapter != null && adapters.has(g.adapter) ? adapters.get(g.adapter).workersPerGroup : 0);
  const cap = (g) => (g.state === "running" ? g.workers : g.state === "starting" ? Math.max(g.workers, wpg(g)) : 0);

  const tasks = s.taskGroups.reduce((sum, t) => sum + t.pending + t.running, 0);
  const workers = s.workerGroups.reduce((sum, g) => sum + cap(g), 0);
  const need = Math.ceil(tasks / p.target_tasks_per_worker);
  const nowMs = BigInt(s.nowMs);
  const commands = [];
  const diagnostics = [];

  if (need > workers) {
    if (place(need - workers, s, p.max_starts_per_tick, commands, diagnostics) > 0) {
      state = ascii(STATE_PREFIX + nowMs.toString());
    }
  } else if (need < workers) {
    const lastStart = readState(state);
    if (lastStart !== null && nowMs - lastStart < BigInt(p.cooldown_ms)) {
      diagnostics.push({ code: "cooldown", message: `a group started less than ${p.cooldown_ms} ms ago` });
    } else {
      const idle = s.workerGroups.filter((g) => g.adapter != null && g.state === "running" && g.queuedTasks === 0);
      const order = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
      idle.sort((a, b) => order(BigInt(b.idleMs), BigInt(a.idleMs)) || order(BigInt(a.id), BigInt(b.id)));
      const victim = idle.find((g) => workers - cap(g) >= need);
      if (victim !== undefined) commands.push({ tag: "shutdown", val: victim.id });
    }
  }
  return { commands, state, diagnostics };
}

// Starts groups of no capabilities in adapter order (priority, then id) within each adapter's free
// slots and the start budget; reports what is left as `unplaceable`. Returns the starts made.
function place(need, s, maxStarts, commands, diagnostics) {
  let budget = maxStarts > 0 ? maxStarts : Infinity;
  let started = 0;
  const ordered = [...s.adapters].sort((a, b) => a.priority - b.priority || (s.names[a.id] < s.names[b.id] ? -1 : 1));
  for (const a of ordered) {
    if (need <= 0 || budget <= 0) break;
    const per = a.workersPerGroup;
    if (per === 0) continue;
    const live = s.workerGroups.filter((g) => g.adapter === a.id).length;
    const slots = a.maxWorkerGroups === 0 ? Infinity : Math.max(0, a.maxWorkerGroups - live);
    const n = Math.min(slots, Math.ceil(need / per), budget);
    for (let i = 0; i < n; i++) commands.push({ tag: "start", val: { adapter: a.id, capabilities: [] } });
    started += n;
    budget -= n;
    need -= n * per;
  }
  if (need > 0) {
    diagnostics.push({ code: "unplaceable", message: `${need} workers short: no adapter has a free slot or the start budget ran out` });
  }
  return started;
}

// The state is ASCII; encoded by hand, as QuickJS has no TextEncoder.
const ascii = (text) => Uint8Array.from(text, (c) => c.charCodeAt(0));

// `last_start_ms` as a BigInt, or null for empty or foreign state.
function readState(state) {
  const text = String.fromCharCode(...state);
  if (!text.startsWith(STATE_PREFIX)) return null;
  try {
    return BigInt(text.slice(STATE_PREFIX.length));
  } catch {
    return null;
  }
}
