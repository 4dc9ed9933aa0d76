import { describe, expect, it } from "vitest";
import { named } from "./named.js";

describe("named", () => {
  it("gives the same text the same name, and different texts different names", () => {
    const a = named("SELECT doc FROM shipments WHERE tracking_number = $1");
    expect(named("SELECT doc FROM shipments WHERE tracking_number = $1")).toEqual(a);
    expect(named("SELECT doc FROM shipments WHERE tracking_number = $2").name).not.toBe(a.name);
    expect(a.text).toBe("SELECT doc FROM shipments WHERE tracking_number = $1");
  });

  it("makes names PostgreSQL keeps whole (identifiers are cut at 63 bytes)", () => {
    const { name } = named(`SELECT ${"x, ".repeat(500)}1`);
    expect(name).toMatch(/^p_[A-Za-z0-9_-]+$/);
    expect(Buffer.byteLength(name ?? "")).toBeLessThanOrEqual(63);
  });
});
