// RFC 9162 section 2.1 Merkle tree hashing and the iterative proof verifiers (2.1.3.2, 2.1.4.2).
// A leaf is an entry's canonical bytes as the registry stored them: SHA-256(0x00 || bytes).
// Sizes and indexes stay below 2**53, so halving is done with arithmetic, never 32-bit shifts.

import { concat, equal, sha256 } from "./bytes.js";

export class ProofError extends Error {}

const ZERO = new Uint8Array([0]);
const ONE = new Uint8Array([1]);

export const leafHash = (bytes) => sha256(concat(ZERO, bytes));
export const nodeHash = (left, right) => sha256(concat(ONE, left, right));

const odd = (n) => n % 2 === 1;
const half = (n) => Math.floor(n / 2);

function powerOfTwo(n) {
  while (n > 1 && !odd(n)) n = half(n);
  return n === 1;
}

/** The root of leaf hashes ``leaves`` (the RFC's MTH; the empty tree's root is SHA-256("")). */
export async function rootOf(leaves) {
  if (leaves.length === 0) return sha256(new Uint8Array(0));
  let level = leaves;
  while (level.length > 1) {
    const pairs = [];
    for (let i = 0; i + 1 < level.length; i += 2) pairs.push(nodeHash(level[i], level[i + 1]));
    const next = await Promise.all(pairs);
    if (odd(level.length)) next.push(level[level.length - 1]);
    level = next;
  }
  return level[0];
}

/** Verify that ``leaf`` (a leaf hash) is entry ``index`` of the tree of ``size`` with ``root``. */
export async function verifyInclusion(index, size, leaf, proof, root) {
  if (!(index >= 0 && index < size)) throw new ProofError(`entry ${index} is not in a tree of ${size}`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new ProofError(`inclusion proof of entry ${index} is too long`);
    if (odd(fn) || fn === sn) {
      r = await nodeHash(p, r);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0 || !equal(r, root)) {
    throw new ProofError(`entry ${index} does not match its inclusion proof in the tree of ${size}`);
  }
}

/** Verify that the tree of ``first`` with ``firstRoot`` is a prefix of ``second``'s. */
export async function verifyConsistency(first, second, firstRoot, secondRoot, proof) {
  if (first > second) throw new ProofError(`tree of ${second} is smaller than the earlier ${first}`);
  if (first === second) {
    if (proof.length || !equal(firstRoot, secondRoot)) {
      throw new ProofError(`two different roots for the same size ${first}`);
    }
    return;
  }
  if (first === 0) return;
  const path = powerOfTwo(first) ? [firstRoot, ...proof] : proof;
  if (path.length === 0) throw new ProofError("empty consistency proof");
  let fn = first - 1;
  let sn = second - 1;
  while (odd(fn)) { fn = half(fn); sn = half(sn); }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) throw new ProofError("consistency proof is too long");
    if (odd(fn) || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0 || !equal(fr, firstRoot) || !equal(sr, secondRoot)) {
    throw new ProofError(`the tree of ${second} is not an extension of the tree of ${first}`);
  }
}
