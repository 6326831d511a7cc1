"""The page's RFC 9162 code (``merkle.js``) against the ledger's (``ledger/merkle.py``), in
chromium: every inclusion and consistency proof of every tree up to 33 leaves verifies, the root
of every size matches, and every proof with one hash changed, dropped or added is refused."""

from __future__ import annotations

import hashlib
from typing import Any

from ledger.merkle import MerkleTree
from tests.webview.conftest import Ledger

SIZES = 33

CHECK = """async ([cases, roots]) => {
    const version = document.querySelector('script[type=module]').src.split('/')[4];
    const m = await import(`/assets/${version}/merkle.js`);
    const bytes = (h) => Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16));
    const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    const out = {accepted: 0, refused: 0, wrong: [], roots: []};
    for (const leaves of roots) out.roots.push(hex(await m.rootOf(leaves.map(bytes))));
    for (const c of cases) {
        const proof = c.proof.map(bytes);
        let ok = true;
        try {
            if (c.kind === 'inclusion') {
                await m.verifyInclusion(c.a, c.b, bytes(c.leaf), proof, bytes(c.root));
            } else {
                await m.verifyConsistency(c.a, c.b, bytes(c.rootA), bytes(c.root), proof);
            }
        } catch (e) {
            if (!(e instanceof m.ProofError)) throw e;
            ok = false;
        }
        if (ok === c.valid) { ok ? out.accepted++ : out.refused++; }
        else out.wrong.push(c);
    }
    return out;
}"""


def tampered(proof: list[bytes]) -> list[list[bytes]]:
    out = []
    for i in range(len(proof)):
        changed = list(proof)
        changed[i] = bytes([proof[i][0] ^ 1]) + proof[i][1:]
        out.append(changed)
    if proof:
        out.append(proof[:-1])
    out.append([*proof, b"\0" * 32])
    return out


def test_merkle_js_agrees_with_the_ledger(ledger: Ledger, page: Any) -> None:
    leaves = [hashlib.sha256(b"\0" + str(i).encode()).digest() for i in range(SIZES)]
    tree = MerkleTree()
    tree.extend(leaves)
    cases: list[dict[str, Any]] = []
    for size in range(1, SIZES + 1):
        root = tree.root(size).hex()
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            base = {"kind": "inclusion", "a": index, "b": size, "leaf": leaves[index].hex()}
            cases.append({**base, "root": root, "proof": [p.hex() for p in proof], "valid": True})
            for bad in tampered(proof):
                cases.append(
                    {**base, "root": root, "proof": [p.hex() for p in bad], "valid": False}
                )
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            base = {"kind": "consistency", "a": old, "b": size, "rootA": tree.root(old).hex()}
            cases.append({**base, "root": root, "proof": [p.hex() for p in proof], "valid": True})
            for bad in tampered(proof) if old < size else []:
                cases.append(
                    {**base, "root": root, "proof": [p.hex() for p in bad], "valid": False}
                )
    roots = [[leaf.hex() for leaf in leaves[:size]] for size in range(SIZES + 1)]
    page.goto(ledger.url + "/")
    page.wait_for_selector("#sign-in")
    result = page.evaluate(CHECK, [cases, roots])
    assert result["wrong"] == []
    valid = sum(1 for c in cases if c["valid"])
    assert result["accepted"] == valid and result["refused"] == len(cases) - valid
    assert result["roots"] == [tree.root(size).hex() for size in range(SIZES + 1)]
