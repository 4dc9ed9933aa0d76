import { describe, expect, it } from "vitest";
import { drainOf } from "./drain.js";

describe("drainOf", () => {
  it("calls every joined function once when the signal aborts, and none taken back", () => {
    const ctl = new AbortController();
    const drain = drainOf(ctl.signal);
    const calls: string[] = [];
    drain.onDrain(() => calls.push("a"));
    const leaveB = drain.onDrain(() => calls.push("b"));
    drain.onDrain(() => calls.push("c"));
    leaveB();
    expect(drain.aborted).toBe(false);
    ctl.abort();
    ctl.abort();
    expect(drain.aborted).toBe(true);
    expect(calls).toEqual(["a", "c"]);
  });

  it("calls a function joining after the abort at once", () => {
    const ctl = new AbortController();
    ctl.abort();
    let called = 0;
    const leave = drainOf(ctl.signal).onDrain(() => called++);
    expect(called).toBe(1);
    leave();
  });

  it("puts one listener on the signal however many streams join, and keeps none of a stream that left", () => {
    const ctl = new AbortController();
    let added = 0;
    const add = ctl.signal.addEventListener.bind(ctl.signal);
    ctl.signal.addEventListener = ((...a: Parameters<typeof add>) => {
      added++;
      add(...a);
    }) as typeof add;
    const leaves = Array.from({ length: 1_000 }, () => drainOf(ctl.signal).onDrain(() => {}));
    expect(added).toBe(1);
    expect(drainOf(ctl.signal)).toBe(drainOf(ctl.signal));
    let late = 0;
    for (const leave of leaves) leave();
    drainOf(ctl.signal).onDrain(() => late++);
    ctl.abort();
    expect(late).toBe(1);
  });

  it("takes back only its own entry when one function joins twice", () => {
    const ctl = new AbortController();
    let n = 0;
    const fn = () => n++;
    const leave1 = drainOf(ctl.signal).onDrain(fn);
    drainOf(ctl.signal).onDrain(fn);
    leave1();
    ctl.abort();
    expect(n).toBe(1);
  });
});
