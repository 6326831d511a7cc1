// C2SP signed notes and tlog-checkpoints, verified with WebCrypto Ed25519 (ledger/checkpoint.py
// is the registry's side). A note is its body, a blank line, then lines "— <name> <base64(4-byte
// key hash || 64-byte signature)>". The signature covers the body bytes exactly.

import { b64decode, concat, equal, hex, sha256, utf8 } from "./bytes.js";

export class NoteError extends Error {}

const MAX_NOTE = 16 * 1024;

/** Parse "<name>+<8 hex>+<base64(0x01 || key)>"; checks the key hash. */
export async function parseVerifierKey(text) {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+=*)$/.exec(String(text));
  if (!m) throw new NoteError(`not a note verifier key: ${String(text).slice(0, 60)}`);
  const [, name, hashHex, keyB64] = m;
  let raw;
  try { raw = b64decode(keyB64); } catch (e) { throw new NoteError(`verifier key: ${e.message}`); }
  if (raw.length !== 33 || raw[0] !== 1) throw new NoteError("verifier key is not an Ed25519 key");
  const keyHash = (await sha256(concat(utf8(name), new Uint8Array([0x0a]), raw))).slice(0, 4);
  if (hex(keyHash) !== hashHex) throw new NoteError("verifier key's hash does not match its key");
  const publicRaw = raw.slice(1);
  const key = await crypto.subtle.importKey("raw", publicRaw, { name: "Ed25519" }, false, ["verify"]);
  return { text, name, keyHash, publicRaw, key };
}

/** Hex SHA-256 of the raw public key, in groups of four: what the page shows to confirm. */
export async function fingerprint(publicRaw) {
  return hex(await sha256(publicRaw)).match(/.{4}/g).join(" ");
}

/**
 * Verify ``text`` (a checkpoint note) with ``verifier`` (parseVerifierKey) for ``origin``;
 * return {origin, size, root, text}. Lines of other keys are ignored; a line of this key that
 * does not verify, or no line of it, fails.
 */
export async function verifyCheckpoint(text, verifier, origin) {
  if (text.length > MAX_NOTE) throw new NoteError("checkpoint note is too large");
  if (!text.endsWith("\n")) throw new NoteError("checkpoint note must end with a newline");
  const split = text.indexOf("\n\n");
  if (split < 0) throw new NoteError("checkpoint note has no signature block");
  const body = text.slice(0, split + 1);
  const lines = text.slice(split + 2, -1).split("\n");
  let verified = false;
  for (const line of lines) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) throw new NoteError(`malformed signature line: ${line.slice(0, 60)}`);
    let raw;
    try { raw = b64decode(m[2]); } catch (e) { throw new NoteError(`signature line: ${e.message}`); }
    if (m[1] !== verifier.name || raw.length < 4 || !equal(raw.slice(0, 4), verifier.keyHash)) continue;
    if (raw.length !== 68) throw new NoteError("signature of the log key has the wrong length");
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, verifier.key, raw.slice(4), utf8(body));
    if (!ok) throw new NoteError("the checkpoint's signature by the pinned log key does not verify");
    verified = true;
  }
  if (!verified) throw new NoteError("the checkpoint is not signed by the pinned log key");
  const parts = body.slice(0, -1).split("\n");
  if (parts.length !== 3) throw new NoteError("checkpoint body must have 3 lines");
  const [seen, sizeText, rootText] = parts;
  if (seen !== origin) throw new NoteError(`checkpoint is for origin ${seen}, expected ${origin}`);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText)) throw new NoteError("checkpoint size is malformed");
  const root = b64decode(rootText);
  if (root.length !== 32) throw new NoteError("checkpoint root is not 32 bytes");
  return { origin: seen, size: Number(sizeText), root, text };
}
