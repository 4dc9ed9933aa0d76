import type { Admission, ScanAdmission } from "../src/scan-ingestor.js";
import type { BudgetCharge } from "../src/shipment-budget.js";

/**
 * Ingest's admission in memory, as the Redis script decides it: the dedupe set (`ids`) and, with a
 * `budgetLimit`, per-shipment totals charged in order (`used`), with every refund kept (`refunds`).
 */
export function memoryAdmission(budgetLimit?: number): ScanAdmission & { ids: Set<string>; used: Map<string, number>; refunds: BudgetCharge[] } {
  const ids = new Set<string>();
  const used = new Map<string, number>();
  const refunds: BudgetCharge[] = [];
  return {
    ids,
    used,
    refunds,
    async admit(items) {
      return items.map((it): Admission => {
        if (ids.has(it.id)) return "seen";
        if (budgetLimit === undefined) return "free";
        const v = (used.get(it.shipment) ?? 0) + it.cost;
        if (v > budgetLimit) return "full";
        used.set(it.shipment, v);
        return "charged";
      });
    },
    settle(stored, back) {
      for (const id of stored) ids.add(id);
      for (const c of back) {
        refunds.push(c);
        used.set(c.shipment, (used.get(c.shipment) ?? 0) - c.cost);
      }
    },
  };
}
