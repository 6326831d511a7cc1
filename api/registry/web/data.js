// What the pages read, all of it verified first. Two modes, chosen by the ledger's size:
// - "full" (up to SCAN_LIMIT entries): the page reads the whole ledger (as C2SP entry bundles,
//   which the browser may cache, or as pages from a registry without tiles), proves it against
//   the checkpoint's root, checks every event's signature and folds its own model (model.js); new
//   entries are proven one by one with inclusion proofs.
// - "summary" (larger ledgers): counts come from the registry's read endpoints, and every entry
//   the page shows is fetched and proven included on its own.

import { b64decode, hex, sha256 } from "./bytes.js";
import { emptyModel, fold } from "./model.js";
import { TILE_WIDTH } from "./registry.js";
import { TrustFailure, verifyEventSignature } from "./trust.js";

export const SCAN_LIMIT = 4000;
const PAGE = 1000;

/** The largest ledger read whole: SCAN_LIMIT, or the number kept under "pht-webview:scan-limit"
 * in local storage (0: never read it whole; the tests use it to run the summary mode). */
export function scanLimit() {
  const kept = localStorage.getItem("pht-webview:scan-limit");
  const value = kept === null ? NaN : Number(kept);
  return Number.isInteger(value) && value >= 0 ? value : SCAN_LIMIT;
}

export class Data {
  constructor(trust, registry) {
    this.trust = trust;
    this.registry = registry;
    this.model = null;
    this.mode = null;
    this.keyIds = new Map(); // public key (base64) -> key id
    this.timings = {}; // performance.now() at each step of load (read by the bench)
    this.verifyKeys = new Map(); // key id -> Promise of its CryptoKey
  }

  get checkpoint() {
    return this.trust.current;
  }

  async load() {
    this.timings.start = performance.now();
    const cp = await this.trust.refresh();
    this.timings.checkpoint = performance.now();
    this.mode = cp.size <= scanLimit() ? "full" : "summary";
    if (this.mode === "full") {
      const texts = await this.readAll(cp.size);
      this.timings.read = performance.now();
      const entries = await this.trust.proveAll(texts.slice(0, cp.size));
      this.timings.proven = performance.now();
      this.model = emptyModel();
      await this.foldChecked(entries);
      this.timings.folded = performance.now();
    }
    return cp;
  }

  /** The stored texts of entries 0..size-1: entry bundles, six asked at a time (a browser's
   * connections to one origin). A registry that serves no tiles (its first bundle is not there)
   * is read as pages, and so is a bundle holding an entry too large to frame. Nothing is
   * trusted here: the caller proves it all. */
  async readAll(size) {
    const count = Math.ceil(size / TILE_WIDTH);
    const width = (n) => Math.min(TILE_WIDTH, size - n * TILE_WIDTH);
    const bundles = new Array(count);
    bundles[0] = await this.registry.bundle(0, width(0));
    if (bundles[0] === null) return this.readPages(size);
    let next = 1;
    const worker = async () => {
      while (next < count) {
        const n = next++;
        bundles[n] = (await this.registry.bundle(n, width(n))) ?? (await this.readRange(n * TILE_WIDTH, width(n)));
      }
    };
    await Promise.all(Array.from({ length: Math.min(6, count - 1) }, worker));
    this.timings.via = "tiles";
    return bundles.flat();
  }

  /** The stored texts of entries 0..size-1 as pages, four asked at a time (a page cut short by
   * the registry's byte limit is completed by asking again from where it stopped). */
  async readPages(size) {
    const starts = [];
    for (let from = 0; from < size; from += PAGE) starts.push(from);
    const pages = [];
    for (let i = 0; i < starts.length; i += 4) {
      pages.push(...(await Promise.all(starts.slice(i, i + 4).map((from) => this.readRange(from, Math.min(PAGE, size - from))))));
    }
    this.timings.via = "pages";
    return pages.flat();
  }

  /** The stored texts of entries from..from+count-1, over as many pages as it takes. */
  async readRange(from, count) {
    const texts = [];
    while (texts.length < count) {
      const page = await this.registry.page(from + texts.length, count - texts.length);
      if (!page.records.length) break;
      texts.push(...page.records);
    }
    return texts;
  }

  /** After the ledger grew: verify the new checkpoint, then prove and fold the new entries.
   * ``fresh`` ({from, records}): entries the long-poll already brought, used instead of
   * asking for them again (they are proven like any other). */
  async update(fresh = null) {
    const prefetch = fresh && this.mode === "full" ? fresh.records.map((_, k) => fresh.from + k) : [];
    const cp = await this.trust.refresh({ prefetch });
    if (this.mode !== "full") return [];
    const added = [];
    while (this.model.size < cp.size) {
      const from = this.model.size;
      const records = fresh && fresh.from === from && fresh.records.length
        ? fresh.records
        : (await this.registry.page(from, Math.min(PAGE, cp.size - from))).records;
      fresh = null;
      if (!records.length) break;
      const entries = await this.trust.proveTexts(from, records.slice(0, cp.size - from));
      await this.foldChecked(entries);
      added.push(...entries);
    }
    return added;
  }

  /** Fold ``entries`` in order; every event's signature is checked by its author's key as the
   * model holds it at that entry (the checks run concurrently; any failure fails the whole). */
  async foldChecked(entries) {
    const checks = [];
    for (const entry of entries) {
      const { kind, body } = entry.event;
      const specs = kind === "consortium" ? body.members || [] : kind === "member" ? [body] : [];
      for (const spec of specs) {
        if (spec.public_key && !this.keyIds.has(spec.public_key)) {
          this.keyIds.set(spec.public_key, hex(await sha256(b64decode(spec.public_key))));
        }
      }
      fold(this.model, [entry], this.keyIds);
      checks.push(this.checkSignature(entry));
    }
    await Promise.all(checks);
  }

  checkSignature(entry) {
    const name = this.model.byKey.get(entry.event.author);
    const member = name && this.model.members.get(name);
    if (!member) {
      return Promise.reject(new TrustFailure("event signature", `entry ${entry.index} is signed by ${entry.event.author.slice(0, 16)}, no member's key`));
    }
    if (!this.verifyKeys.has(member.key_id)) {
      this.verifyKeys.set(member.key_id, crypto.subtle.importKey("raw", b64decode(member.public_key), { name: "Ed25519" }, false, ["verify"]));
    }
    return this.verifyKeys.get(member.key_id)
      .then((key) => verifyEventSignature(entry, key))
      .then((ok) => {
        if (!ok) throw new TrustFailure("event signature", `entry ${entry.index}'s signature by ${name} does not verify`);
      });
  }

  /** The newest ``count`` entries (proven), newest first. */
  async tail(count) {
    const size = this.checkpoint.size;
    const from = Math.max(0, size - count);
    if (this.mode === "full") return this.model.entries.slice(from, size).reverse();
    const page = await this.registry.page(from, size - from);
    const entries = await this.trust.proveTexts(from, page.records.slice(0, size - from));
    await this.signed(entries);
    return entries.reverse();
  }

  /** Entries ``from``..``from+count-1`` (proven). */
  async range(from, count) {
    const size = this.checkpoint.size;
    const end = Math.min(size, from + count);
    if (from >= end) return [];
    if (this.mode === "full") return this.model.entries.slice(from, end);
    const page = await this.registry.page(from, end - from);
    const entries = await this.trust.proveTexts(from, page.records.slice(0, end - from));
    await this.signed(entries);
    return entries;
  }

  /** Fetch, prove and (large ledgers) check the signature of entry ``index``. */
  async entry(index) {
    const entry = await this.trust.entry(index);
    if (this.mode !== "full") await this.signed([entry]);
    return entry;
  }

  /**
   * Large ledgers: check each entry's signature by its author's key. The key comes from the
   * registry's member list, but is trusted only once the member's entry (the genesis or a
   * ``member`` entry) is proven included and holds that very key. Without /v1/members the
   * signatures stay unchecked, and the page says so (``signaturesChecked``).
   */
  async signed(entries) {
    if (this.mode === "full") return;
    if (this.memberList === undefined) {
      const answer = await this.readModel("/v1/members").catch(() => null);
      this.memberList = answer ? answer.members : null;
    }
    if (!this.memberList) { this.signaturesChecked = false; return; }
    this.signaturesChecked = true;
    await Promise.all(entries.map(async (entry) => {
      const key = await this.authorKey(entry.event.author, entry.index);
      if (!(await verifyEventSignature(entry, key))) {
        throw new TrustFailure("event signature", `entry ${entry.index}'s signature by its author does not verify`);
      }
    }));
  }

  authorKey(keyId, index) {
    if (!this.verifyKeys.has(keyId)) this.verifyKeys.set(keyId, this.provenMemberKey(keyId, index));
    return this.verifyKeys.get(keyId);
  }

  async provenMemberKey(keyId, index) {
    const member = this.memberList.find((m) => m.key_id === keyId);
    if (!member) throw new TrustFailure("event signature", `entry ${index} is signed by ${keyId.slice(0, 16)}, no member's key`);
    const source = await this.trust.entry(member.index);
    const body = source.event.body;
    const keys = source.event.kind === "consortium" ? (body.members || []).map((m) => m.public_key) : [body.public_key];
    let found = null;
    for (const text of keys) {
      if (typeof text === "string" && hex(await sha256(b64decode(text))) === keyId) found = text;
    }
    if (!found) {
      throw new TrustFailure("member key", `the registry names entry ${member.index} as ${member.name}'s, but that entry holds no key ${keyId.slice(0, 16)}`);
    }
    return crypto.subtle.importKey("raw", b64decode(found), { name: "Ed25519" }, false, ["verify"]);
  }

  /** A read endpoint's answer, or null when this registry does not have it. */
  readModel(path) {
    return this.registry.optional(path);
  }
}
