// The member's signing key in the browser: read from the key file the user picks (PKCS#8 PEM,
// as `pht keys new` writes it), imported into WebCrypto as a NON-extractable Ed25519 key, and
// optionally kept in IndexedDB as that same non-extractable CryptoKey. The private key bytes never
// leave this module: the extractable import lives only long enough to read the public half.

import { b64decode, hex, sha256 } from "./bytes.js";

const DB = "pht-webview";
const STORE = "keys";

function pemBody(text, label) {
  const m = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(text);
  if (!m) return null;
  return b64decode(m[1].replace(/\s+/g, ""));
}

function b64urlDecode(text) {
  const std = text.replace(/-/g, "+").replace(/_/g, "/");
  return b64decode(std + "=".repeat((4 - (std.length % 4)) % 4));
}

/** Import a PKCS#8 PEM Ed25519 private key; {key, publicRaw, keyId}. Throws naming the fix. */
export async function importKeyFile(text) {
  if (/BEGIN (ENCRYPTED )?PRIVATE KEY/.test(text) === false) {
    throw new Error("this is not a private key file: pick NAME.key as written by `pht keys new`");
  }
  if (/BEGIN ENCRYPTED PRIVATE KEY/.test(text)) {
    throw new Error("encrypted key files are not supported here; use the plain NAME.key file");
  }
  const der = pemBody(text, "PRIVATE KEY");
  let temporary;
  try {
    temporary = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
  } catch (e) {
    throw new Error(`not an Ed25519 private key (${e.name}): pick the member's NAME.key file`);
  }
  const jwk = await crypto.subtle.exportKey("jwk", temporary);
  const publicRaw = b64urlDecode(jwk.x);
  const key = await crypto.subtle.importKey("jwk", jwk, { name: "Ed25519" }, false, ["sign"]);
  jwk.d = "";
  return { key, publicRaw, keyId: hex(await sha256(publicRaw)) };
}

/** Whether this browser has Ed25519 in WebCrypto (sign and verify). */
export async function ed25519Available() {
  try {
    const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const data = new Uint8Array([1, 2, 3]);
    const sig = await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, data);
    return await crypto.subtle.verify({ name: "Ed25519" }, pair.publicKey, sig, data);
  } catch {
    return false;
  }
}

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function withStore(mode, action) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

export const saveKey = (slot, value) => withStore("readwrite", (s) => s.put(value, slot));
export const loadKey = (slot) => withStore("readonly", (s) => s.get(slot));
export const forgetKey = (slot) => withStore("readwrite", (s) => s.delete(slot));
