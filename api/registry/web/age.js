// Decrypting results in the page: the vendored age library (age-typage.js; see vendor.txt) with
// the researcher's identity imported into WebCrypto as a NON-extractable X25519 key, so the
// secret does not stay readable in the page once loaded.

import { Decrypter, bech32 } from "./age-typage.js";
import { concat, fromHex } from "./bytes.js";

// PKCS#8 wrapping of a raw X25519 private key (RFC 8410): what WebCrypto imports.
const PKCS8_X25519 = fromHex("302e020100300506032b656e04220420");

/** An age identity file's AGE-SECRET-KEY-1... line as a non-extractable X25519 CryptoKey. */
export async function loadIdentity(text) {
  const line = text.split("\n").map((l) => l.trim()).find((l) => l.startsWith("AGE-SECRET-KEY-1"));
  if (!line) throw new Error("no AGE-SECRET-KEY-1 line: pick your NAME.age identity file");
  let decoded;
  try {
    decoded = bech32.decode(line, 1024);
  } catch (e) {
    throw new Error(`the identity is not valid Bech32: ${e.message}`);
  }
  if (decoded.prefix !== "age-secret-key-") throw new Error("not an age X25519 identity");
  const raw = Uint8Array.from(bech32.fromWords(decoded.words));
  if (raw.length !== 32) throw new Error("an age X25519 identity is 32 bytes");
  const wrapped = concat(PKCS8_X25519, raw);
  try {
    return await crypto.subtle.importKey("pkcs8", wrapped, { name: "X25519" }, false, ["deriveBits"]);
  } finally {
    raw.fill(0);
    wrapped.fill(0);
  }
}

/** The plaintext of age file ``bytes`` for ``identity``; throws when it is not for it. */
export async function decrypt(identity, bytes) {
  const decrypter = new Decrypter();
  decrypter.addIdentity(identity);
  return decrypter.decrypt(bytes);
}
