// The page's trust core: the pins (the registry's log key and the genesis entry's hash, fixed on
// the first visit), the last checkpoint this browser verified (localStorage), and the checks:
// every checkpoint's signature by the pinned key, each new checkpoint consistent with the last
// one seen, every entry shown proven included. Anything else raises TrustFailure, which the page
// turns into the red banner (keeping both checkpoints as evidence) instead of showing data.

import { concat, fromUtf8, hex, sha256, utf8 } from "./bytes.js";
import { leafHash, rootOf, verifyConsistency, verifyInclusion } from "./merkle.js";
import { fingerprint, parseVerifierKey, verifyCheckpoint } from "./note.js";

export class TrustFailure extends Error {
  constructor(what, detail, evidence = {}) {
    super(`${what}: ${detail}`);
    this.what = what;
    this.detail = detail;
    this.previous = evidence.previous || null; // the last checkpoint verified (note text)
    this.served = evidence.served || null; // what the registry served instead
  }
}

const storageKey = (origin) => `pht-webview:${origin}`;

export function loadPins(origin = location.origin) {
  const text = localStorage.getItem(storageKey(origin));
  return text ? JSON.parse(text) : null;
}

export function savePins(pins, origin = location.origin) {
  localStorage.setItem(storageKey(origin), JSON.stringify(pins));
}

export function forgetPins(origin = location.origin) {
  localStorage.removeItem(storageKey(origin));
}

// Every entry's canonical text ends with the signed event's signature and the entry's own
// fields (JCS orders the keys event < index < prev < received, and event < sig).
const ENTRY_HEAD = '{"event":{"event":';
const ENTRY_TAIL = /,"sig":"([A-Za-z0-9+/]+={0,2})"\},"index":(0|[1-9][0-9]*),"prev":"([0-9a-f]{64})","received":"([^"\\]+)"\}$/;

/** Parse an entry's stored text: {index, prev, received, event, sig, eventText, value}. */
export function parseEntry(text) {
  const tail = ENTRY_TAIL.exec(text);
  if (!text.startsWith(ENTRY_HEAD) || !tail) throw new Error("not an entry in canonical form");
  const value = JSON.parse(text);
  const eventText = text.slice(ENTRY_HEAD.length, tail.index);
  return {
    index: value.index, prev: value.prev, received: value.received,
    event: value.event.event, sig: value.event.sig, eventText, text, value,
  };
}

/** The first visit: what the registry says its log key and genesis are, for the user to confirm. */
export async function candidatePins(registry) {
  const raw = await registry.entry(0);
  const genesis = parseEntry(fromUtf8(raw));
  const body = genesis.event.body || {};
  if (genesis.event.kind !== "consortium" || typeof body.log_key !== "string") {
    throw new TrustFailure("genesis", "entry 0 is not a consortium genesis with a log key");
  }
  const verifier = await parseVerifierKey(body.log_key);
  return {
    logKey: body.log_key,
    origin: body.origin,
    consortium: body.name,
    genesis: hex(await sha256(raw)),
    fingerprint: await fingerprint(verifier.publicRaw),
    checkpoint: null,
  };
}

export class Trust {
  constructor(registry, pins, origin = location.origin) {
    this.registry = registry;
    this.pins = pins;
    this.storageOrigin = origin;
    this.verifier = null;
    this.current = null; // the verified checkpoint {size, root, text}
    this.proven = new Map(); // index -> parsed entry, proven in a verified tree
    this.inclusions = new Map(); // "index/size" -> pending inclusion proof request
    this.genesisChecked = false;
  }

  fail(what, detail, served) {
    throw new TrustFailure(what, detail, { previous: this.pins.checkpoint, served });
  }

  /** Fetch, verify and remember the newest checkpoint; returns it. */
  async refresh({ prefetch = [] } = {}) {
    if (!this.verifier) {
      try {
        this.verifier = await parseVerifierKey(this.pins.logKey);
      } catch (e) {
        this.fail("wrong log key pinned", e.message);
      }
    }
    const [genesis, text] = await Promise.all([
      this.genesisChecked ? null : this.genesisMatchesPins(),
      this.registry.checkpoint(),
    ]);
    let cp;
    try {
      cp = await verifyCheckpoint(text, this.verifier, this.pins.origin);
    } catch (e) {
      this.fail("checkpoint signature", e.message, text);
    }
    // Ask for the proofs of entries about to be proven while the consistency proof is checked;
    // they are verified (in prove) only against this checkpoint, once it is accepted.
    for (const index of prefetch) {
      if (index < cp.size && !this.proven.has(index)) this.fetchInclusion(index, cp.size);
    }
    const last = this.pins.checkpoint ? await this.lastSeen() : null;
    if (last) {
      if (cp.size < last.size) {
        this.fail("rolled-back checkpoint",
          `the registry serves a tree of ${cp.size} entries, but this browser already saw ${last.size}`, text);
      }
      let proof = [];
      if (cp.size > last.size) proof = await this.registry.consistency(last.size, cp.size);
      try {
        await verifyConsistency(last.size, cp.size, last.root, cp.root, proof);
      } catch (e) {
        this.fail("history rewritten",
          `checkpoint ${cp.size} is not consistent with checkpoint ${last.size} seen before: ${e.message}`, text);
      }
    }
    this.current = cp;
    if (genesis) {
      await this.prove(0, genesis);
      this.genesisChecked = true;
    }
    this.pins.checkpoint = text; // kept only once everything about it verified
    savePins(this.pins, this.storageOrigin);
    return cp;
  }

  async lastSeen() {
    try {
      return await verifyCheckpoint(this.pins.checkpoint, this.verifier, this.pins.origin);
    } catch (e) {
      this.fail("wrong log key pinned", `the checkpoint kept from the last visit does not verify: ${e.message}`);
    }
    return null;
  }

  /** Entry 0 must be the pinned genesis and name the pinned log key (proven once a checkpoint is). */
  async genesisMatchesPins() {
    const raw = await this.registry.entry(0);
    const found = hex(await sha256(raw));
    if (found !== this.pins.genesis) {
      this.fail("genesis", `entry 0 hashes to ${found.slice(0, 16)}…, the pinned genesis is ${this.pins.genesis.slice(0, 16)}…`);
    }
    if (parseEntry(fromUtf8(raw)).event.body.log_key !== this.pins.logKey) {
      this.fail("wrong log key pinned", "the pinned log key is not the one this registry's genesis names");
    }
    return raw;
  }

  /** Prove entry ``index`` (its stored bytes ``raw``) included in the current checkpoint. */
  async prove(index, raw) {
    const known = this.proven.get(index);
    if (known) return known;
    const cp = this.current;
    if (index >= cp.size) this.fail("inclusion", `entry ${index} is beyond the checkpoint's ${cp.size} entries`);
    const proof = await this.fetchInclusion(index, cp.size);
    this.inclusions.delete(`${index}/${cp.size}`);
    let entry;
    try {
      await verifyInclusion(index, cp.size, await leafHash(raw), proof, cp.root);
      entry = parseEntry(fromUtf8(raw));
    } catch (e) {
      this.fail("inclusion proof", e.message);
    }
    if (entry.index !== index) this.fail("inclusion proof", `entry ${index} says it is entry ${entry.index}`);
    entry.id = hex(await sha256(utf8(entry.eventText)));
    this.proven.set(index, entry);
    return entry;
  }

  /** Fetch entry ``index`` and prove it. */
  async entry(index) {
    return this.proven.get(index) || this.prove(index, await this.registry.entry(index));
  }

  /** The inclusion proof of ``index`` in the tree of ``size`` (one request, shared). */
  fetchInclusion(index, size) {
    const key = `${index}/${size}`;
    if (!this.inclusions.has(key)) {
      const pending = this.registry.inclusion(index, size);
      pending.catch(() => this.inclusions.delete(key)); // a failed request is asked again
      this.inclusions.set(key, pending);
    }
    return this.inclusions.get(key);
  }

  /** Prove several entries (their stored texts from a page), six requests at a time (what a
   * browser keeps open to one origin). */
  async proveTexts(start, texts) {
    const out = new Array(texts.length);
    let next = 0;
    const worker = async () => {
      while (next < texts.length) {
        const i = next++;
        out[i] = await this.prove(start + i, utf8(texts[i]));
      }
    };
    await Promise.all(Array.from({ length: Math.min(6, texts.length) }, worker));
    return out;
  }

  /**
   * Prove a whole ledger prefix 0..size-1 at once: its leaves must hash to the checkpoint's root
   * (no proof needed). Used when the page reads the whole ledger to build its own model.
   */
  async proveAll(texts) {
    const cp = this.current;
    if (texts.length !== cp.size) this.fail("entries", `the registry served ${texts.length} entries for a tree of ${cp.size}`);
    const leaves = await Promise.all(texts.map((t) => leafHash(utf8(t))));
    const root = await rootOf(leaves);
    if (hex(root) !== hex(cp.root)) this.fail("entries", `entries 0..${cp.size - 1} do not hash to the checkpoint's root`);
    const entries = [];
    for (let i = 0; i < texts.length; i++) {
      const entry = this.proven.get(i) || parseEntry(texts[i]);
      if (entry.index !== i) this.fail("entries", `entry ${i} says it is entry ${entry.index}`);
      entries.push(entry);
    }
    const [ids, hashes] = await Promise.all([
      Promise.all(entries.map((e) => e.id || sha256(utf8(e.eventText)).then(hex))),
      Promise.all(texts.map((t) => sha256(utf8(t)).then(hex))),
    ]);
    entries.forEach((entry, i) => {
      const prev = i === 0 ? "0".repeat(64) : hashes[i - 1];
      if (entry.prev !== prev) this.fail("entries", `entry ${i} does not link to entry ${i - 1} (prev ${entry.prev.slice(0, 16)}…)`);
      entry.id = ids[i];
      this.proven.set(i, entry);
    });
    return entries;
  }
}

/** Verify an event's signature by ``publicRaw`` (b"pht/v1/event\n" + its canonical text). */
export async function verifyEventSignature(entry, publicKey) {
  const message = concat(utf8("pht/v1/event\n"), utf8(entry.eventText));
  const sig = Uint8Array.from(atob(entry.sig), (c) => c.charCodeAt(0));
  return crypto.subtle.verify({ name: "Ed25519" }, publicKey, sig, message);
}
