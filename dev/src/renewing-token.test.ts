import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { createRenewingToken } from "./renewing-token.js";

/** A mint that numbers its tokens and records the lifetimes asked for. */
function countingMint() {
  const lifetimes: number[] = [];
  return {
    lifetimes,
    mint: async (lifetimeSeconds: number) => {
      lifetimes.push(lifetimeSeconds);
      return `token-${lifetimes.length}`;
    },
  };
}

describe("createRenewingToken", () => {
  it("mints on first use, keeps the token for half its lifetime, then mints a new one", async () => {
    let now = 1_000_000;
    const m = countingMint();
    const token = createRenewingToken({ mint: m.mint, lifetimeSeconds: 3600, now: () => now });
    assert.deepEqual(m.lifetimes, [], "nothing minted before the first use");
    assert.equal(await token(), "token-1");
    now += 1_800_000 - 1;
    assert.equal(await token(), "token-1");
    now += 1;
    assert.equal(await token(), "token-2");
    assert.equal(await token(), "token-2");
    now += 1_800_000;
    assert.equal(await token(), "token-3");
    assert.deepEqual(m.lifetimes, [3600, 3600, 3600]);
  });

  it("gives callers at the same time one mint", async () => {
    const m = countingMint();
    const token = createRenewingToken({ mint: m.mint, lifetimeSeconds: 600, now: () => 0 });
    assert.deepEqual(await Promise.all([token(), token(), token()]), ["token-1", "token-1", "token-1"]);
    assert.equal(m.lifetimes.length, 1);
  });

  it("mints again on the next call after a failed mint", async () => {
    let fail = true;
    const m = countingMint();
    const token = createRenewingToken({
      mint: (s) => (fail ? Promise.reject(new Error("key file gone")) : m.mint(s)),
      lifetimeSeconds: 600,
      now: () => 0,
    });
    await assert.rejects(token(), /key file gone/);
    fail = false;
    assert.equal(await token(), "token-1");
  });

  it("refuses a lifetime that is not a positive number of seconds", () => {
    for (const bad of [0, -60, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => createRenewingToken({ mint: async () => "t", lifetimeSeconds: bad }), RangeError, String(bad));
    }
  });
});
