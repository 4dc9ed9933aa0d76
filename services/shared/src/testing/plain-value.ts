/**
 * Whether a value (a field's value, a list, a map or a message init, walked through) holds no NaN
 * and no string with a NUL or a UTF-16 surrogate (map keys included): the values a compiled
 * precheck must decide rather than leave to protovalidate (`compilePrecheck`).
 */
export function isPlainValue(v: unknown): boolean {
  if (typeof v === "number") return !Number.isNaN(v);
  if (typeof v === "string") return !/[\0\uD800-\uDFFF]/.test(v);
  if (Array.isArray(v)) return v.every(isPlainValue);
  if (v && typeof v === "object") return Object.entries(v).every(([k, x]) => isPlainValue(k) && isPlainValue(x));
  return true;
}
