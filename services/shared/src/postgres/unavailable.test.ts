import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { permanentFailureReason } from "../nats/permanent-failure.js";
import { databaseUnavailableReason } from "./unavailable.js";

/** What pg throws for an error the server reported: a DatabaseError with SQLSTATE and severity. */
const serverError = (code: string, message: string) => Object.assign(new Error(message), { code, severity: "ERROR" });

describe("databaseUnavailableReason", () => {
  it("recognises a statement cut short by statement_timeout, and it is not poison", () => {
    const err = serverError("57014", "canceling statement due to statement timeout");
    assert.equal(databaseUnavailableReason(err), "the statement did not finish within the statement timeout (SQLSTATE 57014)");
    assert.equal(permanentFailureReason(err), undefined);
    assert.equal(databaseUnavailableReason(serverError("57014", "canceling statement due to user request")), "the statement was cancelled (SQLSTATE 57014)");
  });

  it("recognises the pool's checkout timeouts, queries the server never answered (query timeout), lost and refused connections, and servers going down or starting", () => {
    const cases: Array<[unknown, RegExp]> = [
      [new Error("timeout exceeded when trying to connect"), /within the connect timeout \(all in use\)/],
      [new Error("Connection terminated due to connection timeout", { cause: new Error("Connection terminated unexpectedly") }), /did not accept a connection within the connect timeout/],
      [new Error("Connection terminated unexpectedly"), /connection was lost/],
      [new Error("Query read timeout"), /^the database did not answer within the query timeout$/],
      [new Error("Client has encountered a connection error and is not queryable"), /connection was lost/],
      [Object.assign(new Error("connect ECONNREFUSED 10.0.0.5:5432"), { code: "ECONNREFUSED" }), /^the database connection failed \(ECONNREFUSED\)$/],
      [serverError("55P03", "canceling statement due to lock timeout"), /lock was not available in time \(SQLSTATE 55P03\)/],
      [serverError("57P01", "terminating connection due to administrator command"), /shutting down \(SQLSTATE 57P01\)/],
      [serverError("57P03", "the database system is in recovery mode"), /not accepting connections yet \(SQLSTATE 57P03\)/],
      [serverError("08006", "connection failure"), /connection failed \(SQLSTATE 08006\)/],
      [serverError("53300", "sorry, too many clients already"), /no connection free \(SQLSTATE 53300\)/],
    ];
    for (const [err, reason] of cases) {
      assert.match(databaseUnavailableReason(err) ?? "undefined", reason);
      assert.equal(permanentFailureReason(err), undefined, String(err));
    }
  });

  it("finds the reason in the cause chain (a store wrapping the driver's error)", () => {
    const wrapped = new Error("apply failed", { cause: serverError("57014", "canceling statement due to statement timeout") });
    assert.match(databaseUnavailableReason(wrapped) ?? "", /statement timeout/);
  });

  it("leaves bugs, bad data and conflicts alone, and never shows the server's address", () => {
    for (const err of [
      serverError("22P02", "invalid input syntax for type integer"),
      serverError("40001", "could not serialize access"),
      serverError("42P01", 'relation "nope" does not exist'),
      new TypeError("cannot read properties of undefined"),
      new Error("Connection terminated unexpectedly, or so they say"),
      "timeout exceeded when trying to connect",
      undefined,
    ]) {
      assert.equal(databaseUnavailableReason(err), undefined, String(err));
    }
    const refused = Object.assign(new Error("connect ECONNREFUSED 10.0.0.5:5432"), { code: "ECONNREFUSED" });
    assert.doesNotMatch(databaseUnavailableReason(refused) ?? "", /10\.0\.0\.5/);
  });
});
