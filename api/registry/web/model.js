// The page's own read model: a pure fold of proven entries into members, tasks and sites (what
// the registry's read endpoints answer, recomputed here from the ledger itself).

const FINISHED = new Set(["completed", "failed", "timeout", "rejected", "cancelled"]);

export function emptyModel() {
  return {
    size: 0, consortium: null, origin: null,
    members: new Map(), // name -> member
    byKey: new Map(), // key id -> name
    tasks: new Map(), // event id -> task
    order: [], // task ids, oldest first
    entries: [],
  };
}

export const isFinished = (state) => FINISHED.has(state);

function addMember(model, spec, index) {
  model.members.set(spec.name, {
    name: spec.name, role: spec.role, public_key: spec.public_key,
    key_id: spec.key_id || null, organization: spec.org || spec.organization || null,
    encryption_key: spec.encryption_key || null, file_service: spec.file_service || null,
    index, added: index, revoked: null,
  });
}

/** The name of the member whose key id is ``keyId`` (or a short key id). */
export const authorName = (model, keyId) => model.byKey.get(keyId) || `key ${String(keyId).slice(0, 12)}`;

/** Fold ``entries`` (proven, parsed, in order) into ``model``; keyIds maps public key -> key id. */
export function fold(model, entries, keyIds) {
  for (const entry of entries) {
    model.entries[entry.index] = entry;
    model.size = Math.max(model.size, entry.index + 1);
    const { kind, body } = entry.event;
    if (kind === "consortium") {
      model.consortium = body.name;
      model.origin = body.origin;
      for (const spec of body.members || []) addMember(model, spec, entry.index);
    } else if (kind === "member") {
      const known = model.members.get(body.name);
      if (body.action === "add") addMember(model, body, entry.index);
      else if (known && body.action === "revoke") { known.revoked = entry.index; known.index = entry.index; }
      else if (known && body.action === "rekey") {
        if (body.encryption_key) known.encryption_key = body.encryption_key;
        known.index = entry.index;
      }
    } else if (kind === "task") {
      const sites = {};
      for (const site of body.sites || []) sites[site] = { state: "pending", index: null, reason: null, events: [] };
      model.tasks.set(entry.id, {
        task: entry.id, index: entry.index, author: authorName(model, entry.event.author),
        image: body.image, label: body.label || null, parent: body.parent || null,
        config: body.config === undefined ? null : body.config, config_blob: body.config_blob || null,
        recipient: body.recipient || null, created: entry.event.time, sites, cancelled: null,
        children: [],
      });
      model.order.push(entry.id);
      const parent = body.parent && model.tasks.get(body.parent);
      if (parent) parent.children.push(entry.id);
    } else if (kind === "cancel") {
      const task = model.tasks.get(body.task);
      if (task) task.cancelled = { index: entry.index, reason: body.reason || null };
    } else if (kind === "status" || kind === "result") {
      const task = model.tasks.get(body.task);
      const site = authorName(model, entry.event.author);
      const progress = task && task.sites[site];
      if (progress) {
        progress.state = body.state;
        progress.index = entry.index;
        progress.reason = body.reason || null;
        progress.events.push(entry);
        if (kind === "result") progress.result = entry;
      }
    }
    for (const member of model.members.values()) {
      if (!member.key_id && keyIds.has(member.public_key)) member.key_id = keyIds.get(member.public_key);
      if (member.key_id) model.byKey.set(member.key_id, member.name);
    }
  }
  return model;
}

/** The overall state of a task: its sites' states, in words. */
export function taskState(task) {
  if (task.cancelled) return "cancelled";
  const states = Object.values(task.sites).map((s) => s.state);
  if (states.every(isFinished)) return "finished";
  if (states.some((s) => s === "started" || s === "accepted")) return "running";
  return "waiting";
}
