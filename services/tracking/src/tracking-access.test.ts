import * as assert from "node:assert/strict";
import { describe, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ANONYMOUS, derivePrincipal } from "@logistics/shared/auth";
import { searchCustomerFor, shipmentViewFor, viewDependsOnOwner } from "./tracking-access.js";

const customer = (id: string, scope = "shipments:read") => derivePrincipal({ sub: `${id}-portal`, scope, customer: id });
const carrier = derivePrincipal({ sub: "gw", scope: "scans:write shipments:read", carrier: "acme" });
const internal = derivePrincipal({ sub: "svc", scope: "shipments:read" });
const operator = derivePrincipal({ sub: "ops", scope: "admin" });

describe("shipmentViewFor", () => {
  it("gives a customer the full view of its own shipment and the public view of another's", () => {
    assert.equal(shipmentViewFor(customer("cust-1"), "cust-1"), "full");
    assert.equal(shipmentViewFor(customer("cust-1"), "cust-2"), "public");
    assert.equal(shipmentViewFor(customer("cust-1"), undefined), "public");
    assert.equal(shipmentViewFor(customer("cust-1", "subscriptions:read"), "cust-1"), "public");
  });

  it("gives carriers and anonymous callers the public view, internal callers with the scope and operators the full view", () => {
    assert.equal(shipmentViewFor(carrier, "cust-1"), "public");
    assert.equal(shipmentViewFor(ANONYMOUS, "cust-1"), "public");
    assert.equal(shipmentViewFor(internal, "cust-1"), "full");
    assert.equal(shipmentViewFor(derivePrincipal({ sub: "svc", scope: "routes:read" }), "cust-1"), "public");
    assert.equal(shipmentViewFor(operator, undefined), "full");
  });

  it("needs the shipment's owner only for customer principals that could see it in full", () => {
    assert.equal(viewDependsOnOwner(customer("cust-1")), true);
    assert.equal(viewDependsOnOwner(internal), false);
    assert.equal(viewDependsOnOwner(carrier), false);
  });
});

describe("searchCustomerFor", () => {
  it("pins a customer to its own account and refuses another one", () => {
    assert.equal(searchCustomerFor(customer("cust-1"), ""), "cust-1");
    assert.equal(searchCustomerFor(customer("cust-1"), "cust-1"), "cust-1");
    assert.throws(() => searchCustomerFor(customer("cust-1"), "cust-2"), (e: unknown) => e instanceof ConnectError && e.code === Code.PermissionDenied);
  });

  it("lets internal callers and operators search as asked, never carriers", () => {
    assert.equal(searchCustomerFor(internal, ""), "");
    assert.equal(searchCustomerFor(operator, "cust-2"), "cust-2");
    assert.throws(() => searchCustomerFor(carrier, ""), (e: unknown) => e instanceof ConnectError && e.code === Code.PermissionDenied);
  });
});
