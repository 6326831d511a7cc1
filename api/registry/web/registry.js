// Signed requests to the registry that served this page (same origin only; nothing else is
// ever contacted). Every request but the public checkpoint carries the member's signature.

import { fromHex, utf8 } from "./bytes.js";
import { signHeaders } from "./httpsig.js";

export class RegistryError extends Error {
  constructor(status, type, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.type = type;
  }
}

const HEAD = '{"entries":[';
export const TILE_WIDTH = 256; // entries in a full entry bundle (C2SP tlog-tiles)
const RETRY = new Set([429, 502, 503, 504]);
const TAIL = '],"next":';

/** Cut an entries page into each entry's stored text (api/wire/pages.py's layout). */
export function pageRecords(text) {
  const cut = text.lastIndexOf(TAIL);
  if (!text.startsWith(HEAD) || cut < HEAD.length - 1) {
    throw new RegistryError(0, "protocol", "the registry's entries page is not in the PHT layout");
  }
  const body = text.slice(HEAD.length, cut);
  const records = body ? body.split(",\n") : [];
  if (records.some((r) => r.includes("\n"))) {
    throw new RegistryError(0, "protocol", "an entry of the page holds a raw newline");
  }
  const tail = JSON.parse("{" + text.slice(cut + 2));
  return { records, next: tail.next, size: tail.size };
}

/** Tile index ``n`` as a tlog-tiles path: three-digit groups, each but the last "x"-prefixed. */
export function tileIndexPath(n) {
  const groups = [];
  do {
    groups.unshift(String(n % 1000).padStart(3, "0"));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? "x" + g : g)).join("/");
}

/** Cut an entry bundle (each entry: its length as a big-endian uint16, then its stored bytes)
 * into ``width`` stored texts. */
export function bundleRecords(bytes, width) {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const texts = [];
  let at = 0;
  while (at < bytes.length) {
    const length = at + 2 <= bytes.length ? (bytes[at] << 8) | bytes[at + 1] : -1;
    if (length < 0 || at + 2 + length > bytes.length) {
      throw new RegistryError(0, "protocol", `an entry bundle is cut short after ${texts.length} entries`);
    }
    try {
      texts.push(decoder.decode(bytes.subarray(at + 2, at + 2 + length)));
    } catch {
      throw new RegistryError(0, "protocol", "an entry of a bundle is not UTF-8 text");
    }
    at += 2 + length;
  }
  if (texts.length !== width) {
    throw new RegistryError(0, "protocol", `an entry bundle holds ${texts.length} entries, not ${width}`);
  }
  return texts;
}

export class Registry {
  constructor(signer, origin = location.origin) {
    this.signer = signer;
    this.origin = origin;
  }

  /** GET ``path``, signed afresh on each try; retried like the CLI's transport on 429/502/503/504
   * and on a signature the registry calls expired (signed in the second it restarted). */
  async fetch(path, { signed = true, signal, cache = "no-store" } = {}) {
    const url = this.origin + path;
    for (let attempt = 0; ; attempt++) {
      const headers = signed ? await signHeaders(this.signer, "GET", url) : {};
      const resp = await fetch(url, {
        headers, signal, cache, credentials: "omit", redirect: "error",
      });
      if (resp.ok) return resp;
      let problem = {};
      try { problem = await resp.json(); } catch { /* not a problem document */ }
      const type = String(problem.type || "").split("/").pop();
      const retry = RETRY.has(resp.status) || type === "signature-expired";
      if (!retry || attempt >= 3) {
        throw new RegistryError(resp.status, type, problem.detail || problem.title || resp.statusText);
      }
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
    }
  }

  async json(path, options) {
    return (await this.fetch(path, options)).json();
  }

  /** A read endpoint that an older registry may not have: null when it answers 404/405. */
  async optional(path) {
    try {
      return await this.json(path);
    } catch (e) {
      if (e instanceof RegistryError && (e.status === 404 || e.status === 405)) return null;
      throw e;
    }
  }

  async checkpoint() {
    return (await this.fetch("/v1/checkpoint", { signed: false })).text();
  }

  /** {records: [entry text], next, size}; ``wait`` long-polls when ``from`` is the size. */
  async page(from, limit = 1000, wait = 0, signal) {
    const q = `from=${from}&limit=${limit}` + (wait ? `&wait=${wait}` : "");
    const text = await (await this.fetch(`/v1/events?${q}`, { signal })).text();
    return pageRecords(text);
  }

  /** The stored texts of entry bundle ``index`` (``width`` entries: fewer in the partial bundle
   * at the ledger's end), or null when this registry serves no tiles (an older one: 404/405) or
   * cannot frame one of its entries in a bundle (422). Bundles never change once served, so the
   * browser's cache may answer (``private, immutable``); they are proven like any entry. */
  async bundle(index, width) {
    const partial = width < TILE_WIDTH ? `.p/${width}` : "";
    try {
      const resp = await this.fetch(`/v1/tile/entries/${tileIndexPath(index)}${partial}`, { cache: "default" });
      return bundleRecords(new Uint8Array(await resp.arrayBuffer()), width);
    } catch (e) {
      if (e instanceof RegistryError && [404, 405, 422].includes(e.status)) return null;
      throw e;
    }
  }

  /** One entry's stored bytes, exactly as served. */
  async entry(index) {
    return new Uint8Array(await (await this.fetch(`/v1/events/${index}`)).arrayBuffer());
  }

  async inclusion(index, size) {
    const value = await this.json(`/v1/proofs/inclusion?index=${index}&size=${size}`);
    return hashes(value);
  }

  async consistency(from, to) {
    return hashes(await this.json(`/v1/proofs/consistency?from=${from}&to=${to}`));
  }

  async blob(sha256) {
    return new Uint8Array(await (await this.fetch(`/v1/blobs/${sha256}`)).arrayBuffer());
  }
}

function hashes(value) {
  if (!value || !Array.isArray(value.proof) || value.proof.length > 64) {
    throw new RegistryError(0, "protocol", "a proof must be an array of at most 64 hashes");
  }
  return value.proof.map((h) => fromHex(String(h)));
}

export const recordBytes = (text) => utf8(text);
