"""queue_depth: enough workers for `target_tasks_per_worker` unfinished tasks each, scaling down one
idle group at a time once `cooldown_ms` has passed since the last start.

The same policy is written in Rust, JavaScript and C beside this folder. Built with componentize-py
against ../../../wit (see build.sh).
"""

import json
import math

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

PARAMS = {
    # name: (kind shown to users, default, doc)
    "target_tasks_per_worker": ("a number > 0", 4, "unfinished tasks each worker should have"),
    "cooldown_ms": ("an integer >= 0", 30000, "no scale-down this soon after a start"),
    "max_starts_per_tick": ("an integer >= 0", 4, "groups started per decision at most; 0 = unlimited"),
}

STATE_PREFIX = b"queue_depth/1:"


def parse_params(text):
    """The params with defaults filled in, or a list of errors naming each bad key."""
    try:
        given = json.loads(text) if text.strip() else {}
    except ValueError as e:
        return None, [f"params are not JSON: {e}"]
    if not isinstance(given, dict):
        return None, [f"params must be a JSON object, got {text}"]
    errors = [f"{k}: unknown param; accepted: {', '.join(PARAMS)}" for k in given if k not in PARAMS]
    params = {name: spec[1] for name, spec in PARAMS.items()}
    for name, value in given.items():
        if name not in PARAMS:
            continue
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name == "target_tasks_per_worker":
            ok = is_number and value > 0
        else:
            ok = is_number and float(value).is_integer() and value >= 0
        if ok:
            params[name] = value
        else:
            errors.append(f"{name}: expected {PARAMS[name][0]}, got {json.dumps(value)}")
    return params, errors


class Policy(exports.Policy):
    def describe(self):
        infos = [types.ParamInfo(name, kind, json.dumps(default), doc) for name, (kind, default, doc) in PARAMS.items()]
        return types.PolicyInfo(
            "queue_depth",
            "0.1.0",
            "Workers for a target number of unfinished tasks each, with a scale-down cooldown.",
            infos,
        )

    def validate(self, params):
        _, errors = parse_params(params)
        if errors:
            raise Err(errors)

    def decide(self, params, snapshot, state):
        p, errors = parse_params(params)
        if errors:
            raise Err("; ".join(errors))
        return decide(p, snapshot, bytes(state))


def decide(p, s, state):
    adapters = {a.id: a for a in s.adapters}

    def wpg(g):
        a = adapters.get(g.adapter) if g.adapter is not None else None
        return a.workers_per_group if a else 0

    def cap(g):
        if g.state == types.GroupState.RUNNING:
            return g.workers
        if g.state == types.GroupState.STARTING:
            return max(g.workers, wpg(g))
        return 0

    tasks = sum(t.pending + t.running for t in s.task_groups)
    workers = sum(cap(g) for g in s.worker_groups)
    need = math.ceil(tasks / p["target_tasks_per_worker"])
    commands, diagnostics = [], []

    if need > workers:
        if place(need - workers, s, p["max_starts_per_tick"], commands, diagnostics) > 0:
            state = STATE_PREFIX + str(s.now_ms).encode()
    elif need < workers:
        last_start = read_state(state)
        if last_start is not None and s.now_ms - last_start < p["cooldown_ms"]:
            diagnostics.append(types.Diagnostic("cooldown", f"a group started less than {p['cooldown_ms']} ms ago"))
        else:
            idle = [
                g for g in s.worker_groups
                if g.adapter is not None and g.state == types.GroupState.RUNNING and g.queued_tasks == 0
            ]
            idle.sort(key=lambda g: (-g.idle_ms, g.id))
            victim = next((g for g in idle if workers - cap(g) >= need), None)
            if victim is not None:
                commands.append(types.Command_Shutdown(victim.id))
    return types.Decision(commands, state, diagnostics)


def place(need, s, max_starts, commands, diagnostics):
    """Starts groups of no capabilities in adapter order (priority, then id) within each adapter's free
    slots and the start budget; reports what is left as `unplaceable`. Returns the starts made."""
    budget = max_starts if max_starts > 0 else math.inf
    started = 0
    for a in sorted(s.adapters, key=lambda a: (a.priority, s.names[a.id])):
        if need <= 0 or budget <= 0:
            break
        per = a.workers_per_group
        if per == 0:
            continue
        if a.max_worker_groups == 0:
            slots = math.inf
        else:
            live = sum(1 for g in s.worker_groups if g.adapter == a.id)
            slots = max(0, a.max_worker_groups - live)
        n = min(slots, math.ceil(need / per), budget)
        for _ in range(int(n)):
            commands.append(types.Command_Start(types.StartGroup(a.id, [])))
        started += int(n)
        budget -= n
        need -= n * per
    if need > 0:
        diagnostics.append(types.Diagnostic("unplaceable", f"{need} workers short: no adapter has a free slot or the start budget ran out"))
    return started


def read_state(state):
    """`last_start_ms`, or None for empty or foreign state."""
    if not state.startswith(STATE_PREFIX):
        return None
    try:
        return int(state[len(STATE_PREFIX):])
    except ValueError:
        return None
