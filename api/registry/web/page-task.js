// Task: image and digest, config, per-site timeline (accepted, started, result) kept live by the
// shell's long-poll, outputs and log with sizes (downloaded, checked against the proven hash,
// and decrypted with the loaded age identity), iterations through ``parent``.

import { equal, fromHex, sha256 } from "./bytes.js";
import { age, badge, bytesText, download, h } from "./dom.js";
import { decryptIfIdentity, hasIdentity, isAge } from "./identity.js";
import { authorName, taskState } from "./model.js";

/** The task as the page shows it, from the page's model or (large ledgers) the read model. */
async function loadTask(ctx, id) {
  const { data } = ctx;
  if (data.model) {
    const task = data.model.tasks.get(id) || [...data.model.tasks.values()].find((t) => id && id.length >= 4 && t.task.startsWith(id));
    if (!task) return null;
    return { ...task, entry: data.model.entries[task.index] };
  }
  const view = await data.readModel(`/v1/tasks/${id}`);
  if (!view) return null;
  const entry = await data.entry(view.task.index);
  if (entry.id !== id) throw new Error(`the registry's task view names entry ${entry.index}, which is not task ${id.slice(0, 12)}`);
  const body = entry.event.body;
  const sites = {};
  for (const [name, s] of Object.entries(view.sites)) {
    const events = s.index === null || s.index === undefined ? [] : [await data.entry(s.index)];
    const latest = events[0];
    sites[name] = { state: latest ? latest.event.body.state : "pending", index: s.index, reason: latest ? latest.event.body.reason : null, events, result: latest && latest.event.kind === "result" ? latest : null };
  }
  return { task: id, index: entry.index, entry, author: entry.event.author.slice(0, 12), image: body.image, label: body.label || null, parent: body.parent || null, config: body.config ?? null, config_blob: body.config_blob || null, sites, cancelled: view.cancelled ? { index: view.cancelled } : null, children: [] };
}

async function fetchBlob(ctx, ref) {
  const bytes = await ctx.registry.blob(ref.sha256);
  if (!equal(await sha256(bytes), fromHex(ref.sha256))) {
    throw new Error(`blob ${ref.sha256.slice(0, 12)} does not hash to the name the signed result gives it`);
  }
  return bytes;
}

function fileRow(ctx, label, name, ref) {
  const message = h("span", { class: "note", role: "status" });
  const get = async (decrypted) => {
    message.textContent = "";
    try {
      let bytes = await fetchBlob(ctx, ref);
      let file = name;
      if (decrypted) {
        if (!isAge(bytes)) { message.textContent = "not encrypted: downloaded as stored"; }
        else { bytes = await decryptIfIdentity(ctx, bytes); file = name.replace(/\.age$/, ""); }
      } else if (isAge(bytes)) {
        file = `${name}.age`;
      }
      download(file, bytes);
      message.textContent = `${message.textContent} saved ${file}`.trim();
    } catch (e) {
      message.textContent = `failed: ${e.message}`;
    }
  };
  return h("li", { "data-file": name },
    `${label} `, h("span", { class: "mono" }, name), ` (${bytesText(ref.size)}, sha256 ${ref.sha256.slice(0, 12)}…) `,
    h("button", { type: "button", class: "dl-raw", onclick: () => get(false) }, `Download ${name} as stored`), " ",
    hasIdentity(ctx) ? h("button", { type: "button", class: "dl-decrypted", onclick: () => get(true) }, `Download ${name} decrypted`) : "",
    " ", message);
}

function timeline(ctx, name, site) {
  const model = ctx.data.model;
  const items = site.events.map((e) => {
    const b = e.event.body;
    return h("li", { "data-state": b.state }, badge(b.state), ` entry ${e.index}, ${age(e.received)}`, b.reason ? ` — ${b.reason}` : "");
  });
  const result = site.result ? site.result.event.body : null;
  const files = [];
  if (result) {
    for (const out of result.outputs || []) files.push(fileRow(ctx, "output", out.name, out));
    if (result.log) files.push(fileRow(ctx, "log", `${name}.log`, result.log));
  }
  return h("section", { class: "site-timeline", "data-site": name, "aria-labelledby": `site-${name}` },
    h("h3", { id: `site-${name}` }, h("a", { href: `#/site/${encodeURIComponent(name)}` }, name), " ", badge(site.state)),
    items.length ? h("ol", { class: "timeline" }, ...items) : h("p", {}, "Nothing from this site yet."),
    result ? h("p", {}, `exit code ${result.exit_code ?? "—"}; image digest `, h("span", { class: "mono digest" }, result.image_digest || "—")) : "",
    files.length ? h("ul", { class: "files" }, ...files) : "");
}

export async function renderTask(ctx, id) {
  const task = await loadTask(ctx, id || "");
  if (!task) return h("p", { class: "error", role: "alert" }, `No task ${String(id).slice(0, 16)} in the verified ledger.`);
  const body = task.entry.event.body;
  const config = task.config !== null
    ? h("pre", { class: "raw", id: "config" }, JSON.stringify(task.config, null, 2))
    : task.config_blob ? h("ul", {}, fileRow(ctx, "config", "config.json", { sha256: task.config_blob, size: null })) : h("p", {}, "none");
  const model = ctx.data.model;
  const iterations = h("p", { id: "iterations" },
    task.parent ? h("span", {}, "Iteration of ", h("a", { href: `#/task/${task.parent}` }, task.parent.slice(0, 12)), ". ") : "First iteration. ",
    task.children.length ? h("span", {}, "Next: ", ...task.children.map((c) => h("a", { href: `#/task/${c}` }, c.slice(0, 12)))) : "");
  return h("div", { id: "task", "data-task": task.task },
    h("h1", {}, `Task ${task.label || task.task.slice(0, 12)} `, badge(model ? taskState(task) : "shown")),
    h("dl", {},
      h("dt", {}, "Task id"), h("dd", { class: "mono" }, task.task),
      h("dt", {}, "Entry"), h("dd", {}, `${task.index}, posted by ${model ? authorName(model, task.entry.event.author) : task.author} ${age(task.entry.received)}`),
      h("dt", {}, "Image"), h("dd", { class: "mono", id: "image" }, task.image),
      h("dt", {}, "Sites"), h("dd", {}, (body.sites || []).join(", ")),
      task.cancelled ? [h("dt", {}, "Cancelled"), h("dd", {}, `entry ${task.cancelled.index}`)] : []),
    iterations,
    h("h2", {}, "Config"), config,
    h("h2", {}, "Sites"),
    h("div", { id: "timelines" }, ...Object.entries(task.sites).map(([name, site]) => timeline(ctx, name, site))));
}
