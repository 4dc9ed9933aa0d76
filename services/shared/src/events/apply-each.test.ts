import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { applyEach } from "./apply-each.js";
import type { BatchItem } from "./batch-consumer.js";

/** Items of a batch: only the key and id matter to applyEach. */
const items = (...keys: string[]) => keys.map((key, i) => ({ key, id: `${key}.${i}` }) as unknown as BatchItem);
const statementTimeout = () => Object.assign(new Error("canceling statement due to statement timeout"), { code: "57014", severity: "ERROR" });

describe("applyEach", () => {
  it("retries, unapplied, every item after a failure that says the database is unavailable (each would wait out the same timeout)", async () => {
    const applied: string[] = [];
    const outcomes = await applyEach(items("a", "b", "a", "c"), async (item) => {
      if (item.key === "b") throw statementTimeout();
      applied.push(item.id);
    });
    assert.deepEqual(applied, ["a.0", "a.2"], "a's items run before b fails; c is not tried");
    assert.deepEqual(
      outcomes.map((o) => o.kind),
      ["ack", "retry", "ack", "retry"],
    );
    assert.match(outcomes[3]?.kind === "retry" ? outcomes[3].reason : "", /^the database is unavailable: canceling statement due to statement timeout/);
  });

  it("keeps applying other shipments after any other failure, and never makes a timeout poison", async () => {
    const applied: string[] = [];
    const outcomes = await applyEach(items("a", "b", "c"), async (item) => {
      if (item.key === "a") throw new Error("serialization failure");
      applied.push(item.id);
    });
    assert.deepEqual(applied, ["b.1", "c.2"]);
    assert.deepEqual(outcomes.map((o) => o.kind), ["retry", "ack", "ack"]);
  });
});
