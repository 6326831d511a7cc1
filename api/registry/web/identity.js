// The researcher's age identity (AGE-SECRET-KEY-1...), chosen by the user and kept only in this
// tab's memory; outputs and logs encrypted to it are decrypted in the page.

import { h } from "./dom.js";

const AGE_HEADER = "age-encryption.org/v1\n";

export function isAge(bytes) {
  const head = new TextDecoder().decode(bytes.subarray(0, AGE_HEADER.length));
  return head === AGE_HEADER;
}

export const hasIdentity = (ctx) => Boolean(ctx.ageIdentity);

export async function decryptIfIdentity(ctx, bytes) {
  if (!ctx.ageIdentity) throw new Error("load your age identity first (Keys page)");
  const { decrypt } = await import("./age.js");
  return decrypt(ctx.ageIdentity, bytes);
}

export async function identityPanel(ctx) {
  const file = h("input", { type: "file", id: "age-file" });
  const message = h("p", { role: "status", id: "age-status" }, ctx.ageIdentity ? "An age identity is loaded." : "No age identity loaded.");
  return h("div", { id: "keys", class: "panel" },
    h("h1", {}, "Keys"),
    h("p", {}, `Signing key: ${ctx.signer.file || "kept in this browser"}, key id ${ctx.signer.keyId}`),
    h("h2", {}, "Age identity for decrypting results"),
    h("p", {}, "Pick your age identity file (NAME.age, as written by `pht keys new`). It stays in this tab's memory only."),
    h("label", { for: "age-file" }, "Age identity file "), file, " ",
    h("button", { type: "button", id: "age-load", onclick: async () => {
      try {
        const text = await file.files[0].text();
        const { loadIdentity } = await import("./age.js");
        ctx.ageIdentity = await loadIdentity(text);
        message.textContent = "An age identity is loaded.";
      } catch (e) {
        message.textContent = `Could not load it: ${e.message}`;
      }
    } }, "Load identity"),
    message);
}
