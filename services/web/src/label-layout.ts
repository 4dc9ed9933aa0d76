/**
 * Collision-free placement of map labels. Pure: sizes come in, positions go out.
 *
 * Labels are placed greedily in priority order; each tries a ring of candidate positions around
 * its anchor (right, left, above, below, then the diagonals) and takes the first whose box stays
 * inside the frame and clear of every placed label and every marker. A label with no free
 * position is dropped (its place is still named in the legs list and the marker's title).
 */

/** An axis-aligned box in pixels. */
export interface Box {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** A label to place next to an anchor point. */
export interface LabelRequest {
  readonly key: string;
  readonly text: string;
  /** Anchor (the marker's centre). */
  readonly x: number;
  readonly y: number;
  /** Radius around the anchor that the label must stay clear of (its marker). */
  readonly clearance: number;
  /** Text size in pixels. */
  readonly width: number;
  readonly height: number;
  /** Higher is placed first. */
  readonly priority: number;
}

/** A placed label: where its text box is, and how to draw it (`textX` with `anchor`, baseline `textY`). */
export interface PlacedLabel {
  readonly key: string;
  readonly text: string;
  readonly box: Box;
  readonly textX: number;
  readonly textY: number;
  readonly anchor: "start" | "middle" | "end";
}

/** True when two boxes overlap (touching edges do not). */
export function overlaps(a: Box, b: Box): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

/**
 * Places labels. `margin` is the empty space kept around every label box (so real text metrics
 * may differ a little from the estimate); a label starts just outside its anchor's clearance.
 */
export function placeLabels(
  requests: readonly LabelRequest[],
  frame: Box,
  obstacles: readonly Box[],
  opts: { margin?: number } = {},
): PlacedLabel[] {
  const margin = opts.margin ?? 3;
  const placed: PlacedLabel[] = [];
  const taken: Box[] = [...obstacles];
  const inside = (b: Box) =>
    b.x >= frame.x && b.y >= frame.y && b.x + b.width <= frame.x + frame.width && b.y + b.height <= frame.y + frame.height;
  const grow = (b: Box): Box => ({ x: b.x - margin, y: b.y - margin, width: b.width + 2 * margin, height: b.height + 2 * margin });
  for (const r of [...requests].sort((a, b) => b.priority - a.priority)) {
    const { x, y, width: w, height: h } = r;
    const gap = r.clearance + margin + 1;
    const candidates: Array<{ box: Box; anchor: PlacedLabel["anchor"] }> = [
      { box: { x: x + gap, y: y - h / 2, width: w, height: h }, anchor: "start" },
      { box: { x: x - gap - w, y: y - h / 2, width: w, height: h }, anchor: "end" },
      { box: { x: x - w / 2, y: y - gap - h, width: w, height: h }, anchor: "middle" },
      { box: { x: x - w / 2, y: y + gap, width: w, height: h }, anchor: "middle" },
      { box: { x: x + gap * 0.7, y: y - gap * 0.7 - h, width: w, height: h }, anchor: "start" },
      { box: { x: x + gap * 0.7, y: y + gap * 0.7, width: w, height: h }, anchor: "start" },
      { box: { x: x - gap * 0.7 - w, y: y - gap * 0.7 - h, width: w, height: h }, anchor: "end" },
      { box: { x: x - gap * 0.7 - w, y: y + gap * 0.7, width: w, height: h }, anchor: "end" },
    ];
    const fit = candidates.find((c) => inside(c.box) && !taken.some((t) => overlaps(grow(c.box), t)));
    if (!fit) continue;
    taken.push(fit.box);
    const b = fit.box;
    const textX = fit.anchor === "start" ? b.x : fit.anchor === "end" ? b.x + b.width : b.x + b.width / 2;
    // Baseline: the box holds the text's ascent and descent; about 78% of the height is above it.
    placed.push({ key: r.key, text: r.text, box: b, textX, textY: b.y + b.height * 0.78, anchor: fit.anchor });
  }
  return placed;
}
