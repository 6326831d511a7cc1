// PHT's RFC 9421 request-signature profile (api/wire/httpsig/profile.py), browser side: the same
// strict form the CLI writes (api/wire/httpsig/_fast_strict.py), covering "@method" and
// "@target-uri", with created, keyid, alg="ed25519", a random nonce and tag="pht/v1/request".

import { b64encode, hex, utf8 } from "./bytes.js";

export const TAG = "pht/v1/request";

export function signatureBase(method, url, params) {
  return `"@method": ${method}\n"@target-uri": ${url}\n"@signature-params": ${params}`;
}

function nonce() {
  return hex(crypto.getRandomValues(new Uint8Array(16)));
}

/** The Signature-Input and Signature headers of a bodiless request (GET). */
export async function signHeaders(signer, method, url, now = Date.now()) {
  const created = Math.floor(now / 1000);
  const params =
    `("@method" "@target-uri");created=${created};keyid="${signer.keyId}";alg="ed25519";` +
    `nonce="${nonce()}";tag="${TAG}"`;
  const base = utf8(signatureBase(method, url, params));
  const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, signer.key, base));
  return { "Signature-Input": `pht=${params}`, Signature: `pht=:${b64encode(sig)}:` };
}
