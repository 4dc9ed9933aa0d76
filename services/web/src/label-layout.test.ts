import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { overlaps, placeLabels, type LabelRequest } from "./label-layout.js";

const frame = { x: 0, y: 0, width: 400, height: 200 };
const label = (key: string, x: number, y: number, priority = 1, width = 60): LabelRequest => ({
  key,
  text: key,
  x,
  y,
  clearance: 5,
  width,
  height: 16,
  priority,
});

describe("placeLabels", () => {
  it("puts a lone label to the right of its marker, clear of the marker", () => {
    const [l] = placeLabels([label("Tokyo", 100, 100)], frame, [{ x: 95, y: 95, width: 10, height: 10 }]);
    assert.equal(l?.anchor, "start");
    assert.ok(l!.box.x > 105, "starts right of the marker");
    assert.ok(!overlaps(l!.box, { x: 95, y: 95, width: 10, height: 10 }));
  });

  it("moves a label to another side rather than overlap a neighbour's", () => {
    // Two hubs 6 px apart (an airport and a port of one city): the labels must not overlap.
    const placed = placeLabels([label("Narita", 100, 100, 2), label("Port", 106, 102, 1)], frame, []);
    assert.equal(placed.length, 2);
    assert.ok(!overlaps(placed[0]!.box, placed[1]!.box), JSON.stringify(placed));
  });

  it("keeps labels inside the frame (a marker at the right edge gets its label on the left)", () => {
    const [l] = placeLabels([label("Edge", 395, 100)], frame, []);
    assert.equal(l?.anchor, "end");
    assert.ok(l!.box.x + l!.box.width <= frame.width);
  });

  it("drops the lower-priority label when no position is free, never overlapping", () => {
    const crowd = Array.from({ length: 12 }, (_, i) => label(`L${i}`, 200, 100, i, 120));
    const placed = placeLabels(crowd, frame, []);
    assert.ok(placed.length < crowd.length);
    assert.ok(placed.some((p) => p.key === "L11"), "the highest priority is placed");
    for (const a of placed) for (const b of placed) if (a !== b) assert.ok(!overlaps(a.box, b.box));
  });
});
