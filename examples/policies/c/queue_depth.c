// queue_depth: enough workers for `target_tasks_per_worker` unfinished tasks each, scaling down one
// idle group at a time once `cooldown_ms` has passed since the last start.
//
// The same policy is written in Rust, Python and JavaScript beside this folder. The bindings
// (scaling_policy.h/.c) are generated from ../../../wit by `wit-bindgen c` (see build.sh). Memory
// handed back to the host is malloc'ed: the generated glue frees it after the call.

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scaling_policy.h"

typedef ebbtide_policy_types_worker_group_t group_t;
typedef exports_ebbtide_policy_policy_snapshot_t snapshot_t;
typedef exports_ebbtide_policy_policy_decision_t decision_t;

typedef struct {
    double target_tasks_per_worker;
    double cooldown_ms;
    double max_starts_per_tick;
} params_t;

static const char *PARAM_NAMES[] = {"target_tasks_per_worker", "cooldown_ms", "max_starts_per_tick"};
static const char *PARAM_KINDS[] = {"a number > 0", "an integer >= 0", "an integer >= 0"};
static const char *PARAM_DEFAULTS[] = {"4", "30000", "4"};
static const char *PARAM_DOCS[] = {
    "unfinished tasks each worker should have",
    "no scale-down this soon after a start",
    "groups started per decision at most; 0 = unlimited",
};
#define PARAM_COUNT 3
#define STATE_PREFIX "queue_depth/1:"

static scaling_policy_string_t text(const char *s) {
    size_t len = strlen(s);
    uint8_t *copy = malloc(len + 1);
    memcpy(copy, s, len + 1);
    return (scaling_policy_string_t){copy, len};
}

// ---- Params: a flat JSON object of numbers (a small parser; a policy has no JSON library). ----

typedef struct {
    const char *at, *end;
} cursor_t;

static void skip_space(cursor_t *c) {
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\t' || *c->at == '\r')) c->at++;
}

// Skips any JSON value; false when it is malformed.
static bool skip_value(cursor_t *c, int depth) {
    skip_space(c);
    if (c->at >= c->end || depth > 32) return false;
    char first = *c->at;
    if (first == '"') {
        for (c->at++; c->at < c->end && *c->at != '"'; c->at++)
            if (*c->at == '\\') c->at++;
        if (c->at >= c->end) return false;
        c->at++;
        return true;
    }
    if (first == '{' || first == '[') {
        char close = first == '{' ? '}' : ']';
        c->at++;
        skip_space(c);
        if (c->at < c->end && *c->at == close) { c->at++; return true; }
        for (;;) {
            if (first == '{') {
                if (!skip_value(c, depth + 1)) return false;
                skip_space(c);
                if (c->at >= c->end || *c->at != ':') return false;
                c->at++;
            }
            if (!skip_value(c, depth + 1)) return false;
            skip_space(c);
            if (c->at < c->end && *c->at == ',') { c->at++; continue; }
            if (c->at < c->end && *c->at == close) { c->at++; return true; }
            return false;
        }
    }
    const char *start = c->at;
    while (c->at < c->end && strchr(",}] \n\t\r", *c->at) == NULL) c->at++;
    return c->at > start;
}

typedef struct {
    char messages[8][200];
    int count;
} errors_t;

static void error(errors_t *e, const char *format, const char *a, const char *b) {
    if (e->count < 8) snprintf(e->messages[e->count++], 200, format, a, b);
}

// Reads a JSON number exactly as written, or fails.
static bool number(const char *start, const char *end, double *out) {
    char buffer[64];
    size_t len = (size_t)(end - start);
    if (len == 0 || len >= sizeof buffer || strchr("-0123456789", *start) == NULL) return false;
    memcpy(buffer, start, len);
    buffer[len] = 0;
    char *stop;
    *out = strtod(buffer, &stop);
    return *stop == 0 && isfinite(*out);
}

static void parse_params(const scaling_policy_string_t *json, params_t *p, errors_t *e) {
    double *fields[PARAM_COUNT] = {&p->target_tasks_per_worker, &p->cooldown_ms, &p->max_starts_per_tick};
    *p = (params_t){4, 30000, 4};
    e->count = 0;
    cursor_t c = {(const char *)json->ptr, (const char *)json->ptr + json->len};
    skip_space(&c);
    if (c.at == c.end) return;
    if (*c.at != '{') { error(e, "params must be a JSON object%s%s", "", ""); return; }
    c.at++;
    skip_space(&c);
    if (c.at < c.end && *c.at == '}') return;
    for (;;) {
        skip_space(&c);
        const char *key = c.at + 1;
        if (c.at >= c.end || *c.at != '"' || !skip_value(&c, 0)) { error(e, "params are not valid JSON%s%s", "", ""); return; }
        char name[64];
        size_t len = (size_t)(c.at - 1 - key);
        snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), key);
        skip_space(&c);
        if (c.at >= c.end || *c.at != ':') { error(e, "params are not valid JSON%s%s", "", ""); return; }
        c.at++;
        skip_space(&c);
        const char *value = c.at;
        if (!skip_value(&c, 0)) { error(e, "params are not valid JSON%s%s", "", ""); return; }
        int i = 0;
        while (i < PARAM_COUNT && strcmp(name, PARAM_NAMES[i]) != 0) i++;
        double v;
        if (i == PARAM_COUNT) {
            error(e, "%s: unknown param; accepted: %s", name, "target_tasks_per_worker, cooldown_ms, max_starts_per_tick");
        } else if (!number(value, c.at, &v) || (i == 0 ? !(v > 0) : (v < 0 || v != floor(v)))) {
            error(e, "%s: expected %s", name, PARAM_KINDS[i]);
        } else {
            *fields[i] = v;
        }
        skip_space(&c);
        if (c.at < c.end && *c.at == ',') { c.at++; continue; }
        if (c.at < c.end && *c.at == '}') return;
        error(e, "params are not valid JSON%s%s", "", "");
        return;
    }
}

// ---- The contract. ----

void exports_ebbtide_policy_policy_describe(exports_ebbtide_policy_policy_policy_info_t *ret) {
    ret->name = text("queue_depth");
    ret->version = text("0.1.0");
    ret->summary = text("Workers for a target number of unfinished tasks each, with a scale-down cooldown.");
    ret->params.len = PARAM_COUNT;
    ret->params.ptr = malloc(PARAM_COUNT * sizeof *ret->params.ptr);
    for (int i = 0; i < PARAM_COUNT; i++) {
        ret->params.ptr[i] = (ebbtide_policy_types_param_info_t){
            text(PARAM_NAMES[i]), text(PARAM_KINDS[i]), text(PARAM_DEFAULTS[i]), text(PARAM_DOCS[i])};
    }
}

bool exports_ebbtide_policy_policy_validate(scaling_policy_string_t *params, scaling_policy_list_string_t *err) {
    params_t p;
    errors_t e;
    parse_params(params, &p, &e);
    scaling_policy_string_free(params);
    if (e.count == 0) return true;
    err->len = (size_t)e.count;
    err->ptr = malloc(err->len * sizeof *err->ptr);
    for (int i = 0; i < e.count; i++) err->ptr[i] = text(e.messages[i]);
    return false;
}

typedef struct {
    ebbtide_policy_types_command_t *items;
    size_t len, cap;
} commands_t;

static void push(commands_t *list, ebbtide_policy_types_command_t command) {
    if (list->len == list->cap) {
        list->cap = list->cap ? list->cap * 2 : 8;
        list->items = realloc(list->items, list->cap * sizeof *list->items);
    }
    list->items[list->len++] = command;
}

static const ebbtide_policy_types_adapter_t *adapter_named(const snapshot_t *s, uint32_t id) {
    for (size_t i = 0; i < s->adapters.len; i++)
        if (s->adapters.ptr[i].id == id) return &s->adapters.ptr[i];
    return NULL;
}

static uint64_t cap(const snapshot_t *s, const group_t *g) {
    if (g->state == EBBTIDE_POLICY_TYPES_GROUP_STATE_RUNNING) return g->workers;
    if (g->state == EBBTIDE_POLICY_TYPES_GROUP_STATE_DRAINING) return 0;
    const ebbtide_policy_types_adapter_t *a = g->adapter.is_some ? adapter_named(s, g->adapter.val) : NULL;
    uint64_t wpg = a ? a->workers_per_group : 0;
    return g->workers > wpg ? g->workers : wpg;
}

static const snapshot_t *sorting; // the snapshot the comparator reads adapter names from

// Adapter order: priority ascending, then id ascending.
static int adapter_order(const void *x, const void *y) {
    const ebbtide_policy_types_adapter_t *a = x, *b = y;
    if (a->priority != b->priority) return a->priority < b->priority ? -1 : 1;
    scaling_policy_string_t na = sorting->names.ptr[a->id], nb = sorting->names.ptr[b->id];
    size_t n = na.len < nb.len ? na.len : nb.len;
    int c = memcmp(na.ptr, nb.ptr, n);
    return c != 0 ? c : (na.len < nb.len ? -1 : na.len > nb.len);
}

// place(need, {}): starts in adapter order within free slots and the start budget. Returns the
// starts made; what is left is reported as `unplaceable`.
static uint64_t place(uint64_t need, const snapshot_t *s, uint64_t max_starts, commands_t *out, char *diagnostic) {
    size_t count = s->adapters.len;
    ebbtide_policy_types_adapter_t *ordered = malloc((count ? count : 1) * sizeof *ordered);
    memcpy(ordered, s->adapters.ptr, count * sizeof *ordered);
    sorting = s;
    qsort(ordered, count, sizeof *ordered, adapter_order);
    uint64_t budget = max_starts > 0 ? max_starts : UINT64_MAX, started = 0;
    for (size_t i = 0; i < count && need > 0 && budget > 0; i++) {
        uint64_t per = ordered[i].workers_per_group;
        if (per == 0) continue;
        uint64_t slots = UINT64_MAX;
        if (ordered[i].max_worker_groups > 0) {
            uint64_t live = 0;
            for (size_t j = 0; j < s->worker_groups.len; j++) {
                const group_t *g = &s->worker_groups.ptr[j];
                if (g->adapter.is_some && g->adapter.val == ordered[i].id) live++;
            }
            slots = ordered[i].max_worker_groups > live ? ordered[i].max_worker_groups - live : 0;
        }
        uint64_t n = (need + per - 1) / per;
        if (n > slots) n = slots;
        if (n > budget) n = budget;
        for (uint64_t k = 0; k < n; k++) {
            ebbtide_policy_types_command_t start = {.tag = EBBTIDE_POLICY_TYPES_COMMAND_START};
            start.val.start.adapter = ordered[i].id;
            start.val.start.capabilities = (ebbtide_policy_types_list_named_capability_t){NULL, 0};
            push(out, start);
        }
        started += n;
        budget -= n;
        need = need > n * per ? need - n * per : 0;
    }
    free(ordered);
    if (need > 0) {
        snprintf(diagnostic, 200, "%llu workers short: no adapter has a free slot or the start budget ran out",
                 (unsigned long long)need);
    }
    return started;
}

// `last_start_ms` from the state; false for empty or foreign state.
static bool read_state(const scaling_policy_list_u8_t *state, uint64_t *last_start) {
    size_t prefix = strlen(STATE_PREFIX);
    if (state->len <= prefix || state->len > prefix + 20 || memcmp(state->ptr, STATE_PREFIX, prefix) != 0) return false;
    char digits[24];
    memcpy(digits, state->ptr + prefix, state->len - prefix);
    digits[state->len - prefix] = 0;
    char *stop;
    *last_start = strtoull(digits, &stop, 10);
    return *stop == 0;
}

static ebbtide_policy_types_list_diagnostic_t one_diagnostic(const char *code, const char *message) {
    ebbtide_policy_types_diagnostic_t *d = malloc(sizeof *d);
    *d = (ebbtide_policy_types_diagnostic_t){text(code), text(message)};
    return (ebbtide_policy_types_list_diagnostic_t){d, 1};
}

bool exports_ebbtide_policy_policy_decide(scaling_policy_string_t *params, snapshot_t *s,
                                          scaling_policy_list_u8_t *state, decision_t *ret,
                                          scaling_policy_string_t *err) {
    params_t p;
    errors_t e;
    parse_params(params, &p, &e);
    scaling_policy_string_free(params);
    if (e.count > 0) {
        *err = text(e.messages[0]);
        return false;
    }
    uint64_t tasks = 0, workers = 0;
    for (size_t i = 0; i < s->task_groups.len; i++) tasks += s->task_groups.ptr[i].pending + s->task_groups.ptr[i].running;
    for (size_t i = 0; i < s->worker_groups.len; i++) workers += cap(s, &s->worker_groups.ptr[i]);
    uint64_t need = (uint64_t)ceil((double)tasks / p.target_tasks_per_worker);

    commands_t commands = {0};
    *ret = (decision_t){0};
    ret->state = *state; // passes through unless a start replaces it
    char diagnostic[200] = "";
    if (need > workers) {
        if (place(need - workers, s, (uint64_t)p.max_starts_per_tick, &commands, diagnostic) > 0) {
            char buffer[48];
            int len = snprintf(buffer, sizeof buffer, STATE_PREFIX "%llu", (unsigned long long)s->now_ms);
            scaling_policy_list_u8_free(state);
            ret->state.ptr = malloc((size_t)len);
            ret->state.len = (size_t)len;
            memcpy(ret->state.ptr, buffer, (size_t)len);
        }
        if (diagnostic[0]) ret->diagnostics = one_diagnostic("unplaceable", diagnostic);
    } else if (need < workers) {
        uint64_t last_start;
        if (read_state(state, &last_start) && s->now_ms - last_start < (uint64_t)p.cooldown_ms) {
            snprintf(diagnostic, sizeof diagnostic, "a group started less than %llu ms ago", (unsigned long long)p.cooldown_ms);
            ret->diagnostics = one_diagnostic("cooldown", diagnostic);
        } else {
            // The first, in idle_ms descending then id ascending, whose removal leaves enough.
            const group_t *victim = NULL;
            for (size_t i = 0; i < s->worker_groups.len; i++) {
                const group_t *g = &s->worker_groups.ptr[i];
                if (!g->adapter.is_some || g->state != EBBTIDE_POLICY_TYPES_GROUP_STATE_RUNNING || g->queued_tasks != 0) continue;
                if (workers - cap(s, g) < need) continue;
                if (!victim || g->idle_ms > victim->idle_ms || (g->idle_ms == victim->idle_ms && g->id < victim->id)) victim = g;
            }
            if (victim) push(&commands, (ebbtide_policy_types_command_t){.tag = EBBTIDE_POLICY_TYPES_COMMAND_SHUTDOWN, .val.shutdown = victim->id});
        }
    }
    ret->commands = (ebbtide_policy_types_list_command_t){commands.items, commands.len};
    return true;
}
