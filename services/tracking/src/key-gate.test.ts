import { describe, expect, it } from "vitest";
import { createKeyGate } from "./key-gate.js";

/** A run that stays open until `finish()` is called, recording when it started. */
function openRun(gate: ReturnType<typeof createKeyGate>, keys: string[], log: string[], name: string) {
  let finish!: () => void;
  const done = gate.run(keys, () => {
    log.push(name);
    return new Promise<void>((r) => (finish = r));
  });
  return { done, finish: () => finish() };
}

describe("createKeyGate", () => {
  it("runs disjoint key sets together and a shared key one after the other", async () => {
    const gate = createKeyGate();
    const log: string[] = [];
    const a = openRun(gate, ["s1", "s2"], log, "a");
    const b = openRun(gate, ["s3"], log, "b");
    const c = openRun(gate, ["s2", "s4"], log, "c");
    await Promise.resolve();
    expect(log).toEqual(["a", "b"]);
    expect(gate.held()).toBe(3);
    a.finish();
    await a.done;
    await Promise.resolve();
    expect(log).toEqual(["a", "b", "c"]);
    b.finish();
    c.finish();
    await Promise.all([b.done, c.done]);
    expect(gate.held()).toBe(0);
  });

  it("lets no later run overtake a waiting one on a shared key", async () => {
    const gate = createKeyGate();
    const log: string[] = [];
    const a = openRun(gate, ["s1"], log, "a");
    const big = openRun(gate, ["s1", "s2"], log, "big");
    const small = openRun(gate, ["s2"], log, "small"); // s2 is free, but "big" waits for it
    await Promise.resolve();
    expect(log).toEqual(["a"]);
    a.finish();
    await a.done;
    await Promise.resolve();
    expect(log).toEqual(["a", "big"]);
    big.finish();
    await big.done;
    await Promise.resolve();
    expect(log).toEqual(["a", "big", "small"]);
    small.finish();
    await small.done;
  });

  it("gives the keys back when the work fails", async () => {
    const gate = createKeyGate();
    await expect(gate.run(["s1"], () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(gate.held()).toBe(0);
    expect(await gate.run(["s1"], async () => 42)).toBe(42);
  });
});
