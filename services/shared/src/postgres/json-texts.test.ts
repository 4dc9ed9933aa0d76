import { describe, expect, it } from "vitest";
import { joinJsonTexts, JSON_TEXT_SEPARATOR } from "./json-texts.js";

describe("joinJsonTexts", () => {
  it("joins JSON.stringify outputs with one separator between each, even when the values hold U+001E", () => {
    const texts = [{ a: "x\u001ey" }, "z", []].map((v) => JSON.stringify(v));
    const joined = joinJsonTexts(texts);
    expect(joined.split(JSON_TEXT_SEPARATOR)).toEqual(texts);
    expect(joinJsonTexts([])).toBe("");
    expect(joinJsonTexts(['{"a":1}'])).toBe('{"a":1}');
  });

  it("refuses a text with a raw separator, which would shift every row after it", () => {
    expect(() => joinJsonTexts(['"a\u001eb"', "1"])).toThrow(/raw U\+001E/);
  });
});
