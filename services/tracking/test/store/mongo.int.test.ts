import { afterAll, beforeAll, describe, it } from "vitest";
import { MongoClient } from "mongodb";
import { uniqueName } from "@logistics/shared/testing";
import { createMongoShipmentStore } from "../../src/store/mongo/mongo-shipment-store.js";
import { runShipmentStoreContract } from "./contract.js";

// No MongoDB server runs on the build machines: the suite runs wherever MONGODB_URL points at one
// (e.g. MONGODB_URL=mongodb://127.0.0.1:27017) and is skipped, with the reason, otherwise.
const url = process.env["MONGODB_URL"];

if (!url) {
  describe("MongoShipmentStore", () => {
    it.skip("runs the ShipmentStore contract against MongoDB (skipped: MONGODB_URL is not set; no MongoDB server to test against)", () => {});
  });
} else {
  describe("MongoShipmentStore", () => {
    const dbName = uniqueName("store");
    let client: MongoClient;
    beforeAll(async () => {
      client = new MongoClient(url, { maxPoolSize: 16 });
      await client.connect();
    });
    afterAll(async () => {
      await client.db(dbName).dropDatabase();
      await client.close();
    });

    runShipmentStoreContract("mongodb", (opts) => createMongoShipmentStore({ client, dbName, ...opts }));
  });
}
